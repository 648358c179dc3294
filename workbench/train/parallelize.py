"""The model made ready for its strategy, in torchtitan's fixed order: activation checkpointing
(compilation, when a spec asks for it, comes next), then FSDP per decoder block (its
cross-attention inside the same unit), on the resampler and the vision encoder, then on the root,
with the precision policy. The model itself never imports ``torch.distributed``."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.nn.parallel import DistributedDataParallel

from workbench.model.flamingo import Flamingo
from workbench.model.lm import FlamingoDecoderLayer
from workbench.spec import TrainSpec
from workbench.train.dist import Dist


def parallelize(model: Flamingo, where: Dist, train: TrainSpec) -> nn.Module:
    """``model`` on ``where.device``, wrapped for ``where.strategy`` (the same module under
    ``single`` and ``fsdp``, a ``DistributedDataParallel`` under ``ddp``)."""
    if train.activation_checkpointing:
        for layer in decoder_layers(model):
            layer.checkpointing = True
    if train.compile:
        compile_blocks(model)
    model.to(where.device)
    if where.strategy == "single":
        return model
    if where.strategy == "ddp":
        ids = [where.device.index] if where.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    policy = precision_policy(train.precision)
    for unit in [*decoder_layers(model), model.resampler, model.vision]:
        fully_shard(unit, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    for method in ("generate", "score"):  # entry points besides forward unshard the root too
        register_fsdp_forward_method(model, method)
    return model


def compile_blocks(model: Flamingo) -> None:
    """``torch.compile`` of each decoder layer (with its cross-attention) and of the resampler,
    in place: the units that repeat, so each compiles once and the LM's own code stays eager."""
    for layer in decoder_layers(model):
        layer.compile()
    model.resampler.compile()


def decoder_layers(model: nn.Module) -> list[FlamingoDecoderLayer]:
    """The LM's decoder layers, each holding its cross-attention block (one FSDP unit each)."""
    return [m for m in model.modules() if isinstance(m, FlamingoDecoderLayer)]


def precision_policy(precision: str) -> MixedPrecisionPolicy:
    """FSDP's policy: bf16 parameters with fp32 gradient reductions under ``bf16``."""
    if precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()
