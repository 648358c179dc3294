"""Step checkpoints of a run: what to save, where, which to keep, and how to find the latest.

A checkpoint is a directory ``<run_dir>/checkpoints/step-<N>/`` holding

- ``tensors/``: the trainable parameters and the optimizer state, as safetensors written through
  ``torch.distributed.checkpoint`` (sharded under FSDP; frozen backbones are not copied: the spec
  names them);
- ``rng-rank<r>.safetensors``: each rank's torch RNG states;
- ``state.json``: the step, the data streams' positions, the loss history so far and the MLflow
  run id;
- ``COMPLETE``: written last, so a run killed while saving leaves no checkpoint that looks whole;
  its JSON manifest records every other file's size and SHA-256 and the tensor keys the run
  holds.

Before a checkpoint is used, every rank checks it against its manifest (:func:`verify`); a
damaged one is never loaded: a resume falls back to the newest intact checkpoint and says why
(:func:`choose`). Nothing is unpickled when loading: safetensors and JSON only.
"""

from __future__ import annotations

import hashlib
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
_HASH_CHUNK = 1 << 24


class CheckpointError(ValueError):
    """A checkpoint that must not be used: damaged, incomplete, or from another model."""


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
    keys = sorted(dcp.training_state(model, optimizer))  # on every rank: may be collective
    dist.barrier(where)
    if where.is_main:
        (path / "state.json").write_text(json.dumps(state, indent=1))
        (path / _MARKER).write_text(json.dumps(_manifest(path, keys, where.world_size)))
        for old in completed(path.parent.parent)[:-keep] if keep > 0 else []:
            shutil.rmtree(old)  # the newest, just written and hashed, is always kept
    dist.barrier(where)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest(path: Path, keys: list[str], ranks: int) -> dict[str, Any]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != _MARKER)
    return {
        "ranks": ranks,
        "keys": keys,
        "files": {str(f.relative_to(path)): {"size": f.stat().st_size, "sha256": _sha256(f)}
                  for f in files},
    }  # fmt: skip


def verify(path: Path, keys: list[str] | None = None) -> dict[str, Any]:
    """Checks ``path`` against its manifest: every file present with its size and content hash,
    ``state.json`` readable, and (given ``keys``, this rank's tensor keys) the same tensors;
    returns ``state.json``.

    Raises:
        CheckpointError: naming the first file (or key) that is wrong.
    """
    marker = path / _MARKER
    if not marker.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint (no {_MARKER} marker)")
    text = marker.read_text()
    try:  # an empty marker: written before checkpoints were hashed (nothing to check against)
        manifest: dict[str, Any] = (
            json.loads(text) if text else {"files": {}, "keys": sorted(keys or [])}
        )
    except json.JSONDecodeError:
        raise CheckpointError(f"{marker} is not a readable manifest") from None
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file} is missing")
        if file.stat().st_size != expected["size"]:
            raise CheckpointError(
                f"{file} has {file.stat().st_size} bytes, {expected['size']} were written"
            )
        if _sha256(file) != expected["sha256"]:
            raise CheckpointError(f"{file}: its content differs from what was written")
    if keys is not None and sorted(keys) != manifest["keys"]:
        missing = sorted(set(keys) - set(manifest["keys"]))
        extra = sorted(set(manifest["keys"]) - set(keys))
        raise CheckpointError(
            f"{path} does not hold this model's tensors: missing {missing[:3]}, extra {extra[:3]}"
        )
    try:
        state: dict[str, Any] = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path / 'state.json'} is unreadable: {err}") from None
    return state


def choose(run_dir: Path, keys: list[str] | None = None) -> tuple[Path | None, list[str]]:
    """The newest intact checkpoint of a run (None when it has none that is complete), and one
    line per newer checkpoint skipped as damaged.

    Raises:
        CheckpointError: the run has complete checkpoints but none is intact.
    """
    skipped: list[str] = []
    found = completed(run_dir)
    for path in reversed(found):
        try:
            verify(path, keys)
        except CheckpointError as err:
            skipped.append(f"{path.name}: {err}")
            continue
        return path, skipped
    if found:
        raise CheckpointError(
            f"no intact checkpoint in {run_dir / 'checkpoints'}: " + "; ".join(skipped)
        )
    return None, skipped


def resume(
    run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, where: Dist
) -> tuple[dict[str, Any] | None, Path | None, list[str]]:
    """Restores the newest intact checkpoint of ``run_dir`` (:func:`choose`, then :func:`load`):
    its ``state.json`` (None when the run has none), its path, and the damaged ones skipped,
    which rank 0 says in one line."""
    path, skipped = choose(run_dir, sorted(dcp.training_state(model, optimizer)))
    if skipped and where.is_main:
        print(f"resume: skipped damaged {'; '.join(skipped)}; resuming from "
              f"{path.name if path else 'the start'}", flush=True)  # fmt: skip
    if path is None:
        return None, None, skipped
    return load(path, model, optimizer, where, verified=True), path, skipped


def load(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    where: Dist,
    verified: bool = False,
) -> dict[str, Any]:
    """Restores parameters, optimizer and this rank's RNG from ``path`` once it is verified
    (:func:`verify`, on this rank, unless ``verified`` says :func:`choose` just did); returns
    ``state.json``."""
    if verified:
        state: dict[str, Any] = json.loads((path / "state.json").read_text())
    else:
        state = verify(path, sorted(dcp.training_state(model, optimizer)))
    rng = path / f"rng-rank{where.rank}.safetensors"
    if not rng.exists():
        raise CheckpointError(
            f"{rng} is missing: the checkpoint was written by fewer ranks; resume with the same "
            "number of processes"
        )
    dcp.load_training_state(model, optimizer, path / "tensors", where)
    _set_rng_state(load_file(str(rng)))
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
    spec = RunSpec.from_json(verify(path)["spec"])
    model, processor, tokenizer = build_model(spec)
    where = Dist("single", 0, 1, 0, torch.device(device))
    dcp.load_model_state(model.to(device), path / "tensors", where)
    return model.eval(), processor, tokenizer, spec
