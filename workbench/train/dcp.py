"""Checkpoint tensors through ``torch.distributed.checkpoint``: the trainable parameters and the
optimizer state as safetensors files (one per rank under FSDP, resharded on load). Loading runs
no pickle."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
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
from torch.distributed.tensor import DTensor

from workbench.train.dist import Dist

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
