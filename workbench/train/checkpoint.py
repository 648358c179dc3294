"""Step checkpoints of a run: what to save, where, which to keep, and how to find the latest.

A checkpoint is a directory ``<run_dir>/checkpoints/step-<N>/`` holding

- ``tensors/``: the trainable parameters and the optimizer state, as safetensors written through
  ``torch.distributed.checkpoint`` (sharded under FSDP; frozen backbones are not copied: the spec
  names them);
- ``rng-rank<r>.safetensors``: each rank's torch RNG states;
- ``state.json``: the step, the data streams' positions, the loss history so far and the MLflow
  run id;
- ``COMPLETE``: written last, so a run killed while saving leaves no checkpoint that looks whole.

Nothing is unpickled when loading: safetensors and JSON only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from workbench.spec import RunSpec
from workbench.train import dcp, dist
from workbench.train.build import build_model
from workbench.train.dist import Dist

_MARKER = "COMPLETE"


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:08d}"


def completed(run_dir: Path) -> list[Path]:
    """Whole checkpoints of a run, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / _MARKER).exists())


def latest(run_dir: Path) -> Path | None:
    found = completed(run_dir)
    return found[-1] if found else None


def save(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    where: Dist,
    keep: int,
) -> None:
    """Writes a checkpoint on every rank together; rank 0 then drops all but the ``keep`` latest."""
    if where.is_main:
        if path.exists():  # a partial one from a killed run
            shutil.rmtree(path)
        path.mkdir(parents=True)
    dist.barrier(where)
    dcp.save_training_state(model, optimizer, path / "tensors", where)
    save_file(_rng_state(), str(path / f"rng-rank{where.rank}.safetensors"))
    dist.barrier(where)
    if where.is_main:
        (path / "state.json").write_text(json.dumps(state, indent=1))
        (path / _MARKER).touch()
        for old in completed(path.parent.parent)[:-keep] if keep > 0 else []:
            shutil.rmtree(old)
    dist.barrier(where)


def load(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, where: Dist
) -> dict[str, Any]:
    """Restores parameters, optimizer and this rank's RNG from ``path``; returns ``state.json``."""
    if not (path / _MARKER).exists():
        raise FileNotFoundError(f"{path} is not a complete checkpoint")
    dcp.load_training_state(model, optimizer, path / "tensors", where)
    rng = path / f"rng-rank{where.rank}.safetensors"
    if not rng.exists():
        raise FileNotFoundError(
            f"{rng} is missing: the checkpoint was written by fewer ranks; resume with the same "
            "number of processes"
        )
    _set_rng_state(load_file(str(rng)))
    state: dict[str, Any] = json.loads((path / "state.json").read_text())
    return state


def _rng_state() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _set_rng_state(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def resolve(run_or_checkpoint: str | Path) -> Path:
    """A checkpoint directory from itself or from a run directory (its latest checkpoint)."""
    path = Path(run_or_checkpoint)
    if (path / _MARKER).exists():
        return path
    found = latest(path)
    if found is None:
        raise FileNotFoundError(f"{path} is neither a complete checkpoint nor a run with one")
    return found


def load_model(run_or_checkpoint: str | Path, device: str = "cpu") -> tuple[Any, Any, Any, Any]:
    """(model, image processor, tokenizer, spec) of a checkpoint: the model built from the run's
    spec with its trained parameters loaded (one process)."""
    path = resolve(run_or_checkpoint)
    state = json.loads((path / "state.json").read_text())
    spec = RunSpec.from_json(state["spec"])
    model, processor, tokenizer = build_model(spec)
    where = Dist("single", 0, 1, 0, torch.device(device))
    dcp.load_model_state(model.to(device), path / "tensors", where)
    return model.eval(), processor, tokenizer, spec
