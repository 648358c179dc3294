"""A spec's objects: its checks before anything is built, its model, and its tracker."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from workbench import track
from workbench.data.pipeline import check_data
from workbench.eval.run import check_eval_spec
from workbench.model.factory import create_model
from workbench.model.flamingo import Flamingo
from workbench.spec import RunSpec, SpecError
from workbench.train.result import RunOptions, run_dir


def check_spec(spec: RunSpec, world_size: int = 1) -> None:
    """What a run needs beyond a well-typed spec; raises :class:`SpecError` before any work."""
    if not spec.model.lm:
        raise SpecError("model.lm is required: a Hugging Face id or a local LM directory")
    if spec.train.steps < 1 or spec.train.grad_accum < 1:
        raise SpecError("train.steps and train.grad_accum must be at least 1")
    if spec.train.checkpoint_every < 0 or spec.train.keep_checkpoints < 1:
        raise SpecError("train.checkpoint_every must be >= 0 and train.keep_checkpoints >= 1")
    check_eval_spec(spec.eval)
    check_data(spec.data, world_size)


def build_model(spec: RunSpec) -> tuple[Flamingo, Any, Any]:
    """(model, image processor, tokenizer) of ``spec``, with the seed's initial weights (the
    same on every rank, and again when a checkpoint is loaded for evaluation)."""
    torch.manual_seed(spec.train.seed)
    return create_model(spec.model)


def git_commit() -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        head, dirty = (
            subprocess.run(
                ["git", *args], cwd=here, capture_output=True, text=True, check=True
            ).stdout.strip()
            for args in (["rev-parse", "HEAD"], ["status", "--porcelain", "--untracked-files=no"])
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def open_tracker(
    spec: RunSpec, home: Path, options: RunOptions, run_id: str | None, latest: Path | None
) -> Any:
    """The run's MLflow tracker on rank 0 (a new run, or the checkpoint's run when resuming);
    a :class:`~workbench.track.NullTracker` without tracking.

    The run is named for what it is, ``<experiment> <axis=value ...> seed<k>`` (e.g.
    ``shapes_tiny xattn_every=2 seed0``), from the ``axis.<name>`` tags of ``options``.
    """
    if not options.track:
        return track.NullTracker()
    commit = git_commit()
    tags = {
        "config_id": spec.config_id,
        "seed": spec.train.seed,
        "git_commit": commit,
        "run_dir": str(run_dir(spec, home).resolve()),
        "host": socket.gethostname(),
        "pid": os.getpid(),  # a RUNNING run whose process is gone was interrupted
        **standard_tags(commit),
        **options.tags,
    }
    experiment = options.experiment or spec.name
    axes = [
        f"{k.removeprefix('axis.')}={v}" for k, v in options.tags.items() if k.startswith("axis.")
    ]
    tracker = track.Tracker(
        options.tracking_uri or track.default_uri(home),
        experiment,
        run_name=" ".join([experiment, *axes, f"seed{spec.train.seed}"]),
        params=spec.flatten(),
        tags=tags,
        run_id=run_id,
        home=home,
    )
    if run_id is None:
        tracker.log_text(spec.to_json(), "spec.json")
    else:
        tracker.set_tags({"resumed_from": str(latest)})
    return tracker


def standard_tags(commit: str) -> dict[str, str]:
    """MLflow's own tags of a run, shown in its UI: the commit (without ``-dirty``), the entry
    point (``wb <command>``, ``python -m <module>`` or a script) and the user."""
    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] not in ("", "-c") else ""
    if main is not None:
        script = "python -m " + main.name.removesuffix(".__main__")
    elif script == "wb" and len(sys.argv) > 1:
        script = f"wb {sys.argv[1]}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (a bare container)
        user = "unknown"
    tags = {"mlflow.source.name": script or "workbench", "mlflow.source.type": "LOCAL",
            "mlflow.user": user}  # fmt: skip
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    return tags
