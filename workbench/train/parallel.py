"""Process groups, data-parallel wrapping, collectives, sharded checkpoint I/O and the launcher.

The only module that imports ``torch.distributed``. Strategies:

- ``single``: one process, CPU or one GPU; every collective here is the identity.
- ``ddp``: ``DistributedDataParallel`` (gradients all-reduced, parameters replicated).
- ``fsdp``: FSDP2 ``fully_shard`` on each decoder layer together with its cross-attention block,
  on the resampler, on the vision encoder, then on the root; bf16 parameters with fp32
  reductions under ``bf16`` precision.

Processes are started by ``torchrun`` (or :func:`launch`, which runs it); ``ddp``/``fsdp`` without
it form a group of one. CUDA uses NCCL, the CPU gloo.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import HuggingFaceStorageReader, HuggingFaceStorageWriter
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import (
    MixedPrecisionPolicy,
    fully_shard,
    register_fsdp_forward_method,
)
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

STRATEGIES = ("single", "ddp", "fsdp")


@dataclass(frozen=True)
class Dist:
    """Where this process sits: its rank among ``world_size`` and its device."""

    strategy: str
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """A process group exists (``ddp``/``fsdp``), so collectives communicate."""
        return self.strategy != "single"


def init(strategy: str, device: str | None = None) -> Dist:
    """Joins (or, for ``ddp``/``fsdp`` outside torchrun, forms) the process group.

    Args:
        device: ``"cpu"``, ``"cuda"``; default CUDA when available.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {list(STRATEGIES)}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if strategy == "single" and world > 1:
        raise ValueError(
            f"strategy 'single' started with WORLD_SIZE={world}: use 'ddp' or 'fsdp' under torchrun"
        )
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device(kind)
    if strategy != "single" and not dist.is_initialized():
        backend = "nccl" if where.type == "cuda" else "gloo"
        if "MASTER_ADDR" in os.environ:
            dist.init_process_group(backend, device_id=where if where.type == "cuda" else None)
        else:  # a group of one, outside torchrun
            dist.init_process_group(
                backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
            )
    return Dist(strategy, rank, world, local_rank, where)


def shutdown(where: Dist) -> None:
    if where.active and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrap(
    model: nn.Module,
    where: Dist,
    *,
    precision: str = "fp32",
    unit_types: tuple[type[nn.Module], ...] = (),
    units: Sequence[nn.Module] = (),
) -> nn.Module:
    """The model ready for training under ``where.strategy``.

    Args:
        unit_types: module types that become one FSDP unit each (the decoder layers with their
            cross-attention); ``units`` are further modules sharded as units (resampler, vision).
    """
    model.to(where.device)
    if where.strategy == "single":
        return model
    if where.strategy == "ddp":
        return DistributedDataParallel(
            model, device_ids=[where.device.index] if where.device.type == "cuda" else None
        )
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if precision == "bf16"
        else MixedPrecisionPolicy()
    )
    for module in [m for m in model.modules() if isinstance(m, unit_types)] + list(units):
        fully_shard(module, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    for method in ("generate", "score"):  # entry points besides forward unshard the root too
        if hasattr(model, method):
            register_fsdp_forward_method(model, method)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Backward passes inside reduce gradients across ranks only when ``enabled`` (the last
    micro-batch of an accumulated step)."""
    if isinstance(model, DistributedDataParallel) and not enabled:
        with model.no_sync():
            yield
        return
    set_sync = getattr(model, "set_requires_gradient_sync", None)  # an FSDP2 module
    if set_sync is not None:
        set_sync(enabled)
    yield


def all_reduce_sum(tensor: torch.Tensor, where: Dist) -> torch.Tensor:
    """Sum over ranks, in place."""
    if where.active and where.world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def first_values(params: Sequence[torch.Tensor], where: Dist) -> list[float]:
    """The first element of each parameter (the gates), read on every rank.

    A 1-element FSDP parameter lives on one rank, the others holding an empty shard, so the
    local parts are summed over ranks; a collective, so every rank must call it.
    """
    values = []
    sharded = any(isinstance(p, DTensor) for p in params)
    for p in params:
        local = p.to_local() if isinstance(p, DTensor) else p
        values.append(local.detach().reshape(-1)[:1].float().sum())
    if not values:
        return []
    stacked = torch.stack(values)
    if sharded:
        all_reduce_sum(stacked, where)
    return [float(v) for v in stacked.cpu()]


def clip_grad_norm(params: Sequence[torch.Tensor], max_norm: float) -> float:
    """Clips the global gradient norm (over every shard); returns the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return float(norm)


def gather_objects(obj: object, where: Dist) -> list[object]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not (where.active and where.world_size > 1):
        return [obj]
    out: list[object] = [None] * where.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(where: Dist) -> None:
    if where.active and where.world_size > 1:
        dist.barrier()


def broadcast_object(obj: object, where: Dist) -> object:
    if not (where.active and where.world_size > 1):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --- checkpoint tensors -----------------------------------------------------------------------

_OPTIONS = StateDictOptions(ignore_frozen_params=True, flatten_optimizer_state_dict=True)
_LOAD_OPTIONS = StateDictOptions(
    ignore_frozen_params=True, flatten_optimizer_state_dict=True, strict=False
)


def _model_tensors(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(the trainable state dict, its tensors under ``model.*`` with tied parameters once)."""
    state: dict[str, Any] = get_model_state_dict(model, options=_OPTIONS)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        storage = (value.to_local() if isinstance(value, DTensor) else value).untyped_storage()
        if storage.data_ptr() in seen and storage.nbytes():
            continue  # the second name of a tied parameter
        seen.add(storage.data_ptr())
        tensors[f"model.{key}"] = value
    return state, tensors


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The trainable parameters (``model.*``) and the optimizer's tensors (``optim.*``), sharded
    as they are in memory (DTensors under FSDP). Tied parameters appear once."""
    _, tensors = _model_tensors(model)
    optim_state: dict[str, Any] = get_optimizer_state_dict(model, optimizer, options=_OPTIONS)
    for key, value in optim_state.items():
        if isinstance(value, torch.Tensor):  # hyperparameters come from the spec, not the file
            tensors[f"optim.{key}"] = value
    return tensors


@contextlib.contextmanager
def _one_process_is_intended() -> Iterator[None]:
    """DCP warns that it assumes one process when no group exists: that is what we mean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed is disabled")
        yield


def save_training_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, path: Path, where: Dist
) -> None:
    """Writes :func:`training_state` as safetensors files (one per rank under FSDP), through
    ``torch.distributed.checkpoint``: loading it runs no pickle."""
    writer = HuggingFaceStorageWriter(str(path), save_distributed=where.world_size > 1)
    with _one_process_is_intended():
        dcp.save(training_state(model, optimizer), storage_writer=writer, no_dist=not where.active)


def _read(tensors: dict[str, torch.Tensor], path: Path, where: Dist) -> None:
    """Fills ``tensors`` in place from the safetensors checkpoint at ``path``."""
    with _one_process_is_intended():
        reader = HuggingFaceStorageReader(str(path))
        dcp.load(tensors, storage_reader=reader, no_dist=not where.active)


def _set_model(model: nn.Module, full: dict[str, Any], loaded: dict[str, torch.Tensor]) -> None:
    """Puts the loaded ``model.*`` tensors into the model (tied names share the tensor loaded
    under their first name)."""
    state: dict[str, Any] = {
        k.removeprefix("model."): v for k, v in loaded.items() if k.startswith("model.")
    }
    for key in full:
        state.setdefault(key, full[key])
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    result = set_model_state_dict(model, state, options=_LOAD_OPTIONS)
    missing = sorted(set(result.missing_keys) - frozen)
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"the checkpoint does not fit the model: missing {missing}, "
            f"unexpected {sorted(result.unexpected_keys)}"
        )


def load_model_state(model: nn.Module, path: Path, where: Dist) -> None:
    """Restores only the trainable parameters that :func:`save_training_state` wrote."""
    full, tensors = _model_tensors(model)
    _read(tensors, path, where)
    _set_model(model, full, tensors)


def load_training_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, path: Path, where: Dist
) -> None:
    """Restores what :func:`save_training_state` wrote, resharding to this run's ranks."""
    full, tensors = _model_tensors(model)
    optim_state: dict[str, Any] = get_optimizer_state_dict(model, optimizer, options=_OPTIONS)
    tensors.update({f"optim.{k}": v for k, v in optim_state.items() if isinstance(v, torch.Tensor)})
    _read(tensors, path, where)
    _set_model(model, full, tensors)
    optim_state.update(
        {k.removeprefix("optim."): v for k, v in tensors.items() if k.startswith("optim.")}
    )
    set_optimizer_state_dict(model, optimizer, optim_state, options=_OPTIONS)


# --- launching ----------------------------------------------------------------------------------


def launch(
    args: Sequence[str],
    *,
    nproc_per_node: int,
    nnodes: int = 1,
    node_rank: int | None = None,
    rdzv_endpoint: str | None = None,
    module: str = "workbench.train",
) -> int:
    """Runs ``python -m module *args`` under torchrun; returns its exit code.

    One machine: a local rendezvous on a free port. Several: the same command on each machine
    with ``nnodes`` and a shared ``rdzv_endpoint`` (host:port).
    """
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc_per_node}"]
    if nnodes > 1:
        if not rdzv_endpoint:
            raise ValueError("several nodes need a rendezvous endpoint (host:port)")
        command += [f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}"]
        if node_rank is not None:
            command.append(f"--node-rank={node_rank}")
    else:
        local = [f"--rdzv-endpoint={rdzv_endpoint}"] if rdzv_endpoint else ["--standalone"]
        command += local
    command += ["-m", module, *args]
    return subprocess.run(command, check=False).returncode
