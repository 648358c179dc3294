"""Where a run lives and what it produced."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from torch import nn

from workbench.spec import RunSpec


class JobFailed(RuntimeError):
    """A training job ended without its result (a rank died or a worker failed): ``wb`` exits
    with 1, not 2, since it is not the user's mistake."""


class Stopped(Exception):
    """Raised by an ``on_eval`` callback to end a run early (e.g. a pruned search trial); the
    training loop adds the stopped run's MLflow id."""

    run_id: str | None = None


def home_dir(home: str | Path | None = None) -> Path:
    """``home``, else ``$WB_HOME``, else ``./wb-runs``."""
    return Path(home or os.environ.get("WB_HOME") or "wb-runs")


def run_dir(spec: RunSpec, home: str | Path | None = None) -> Path:
    """Where a run keeps its spec, checkpoints and result: one directory per config and seed."""
    return home_dir(home) / "runs" / f"{spec.name}-{spec.config_id}-seed{spec.train.seed}"


@dataclass
class RunResult:
    """What a run produced. ``history`` has one entry per optimizer step (from step 1)."""

    run_id: str | None
    run_dir: Path
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    model: nn.Module | None = field(default=None, repr=False, compare=False)  # in-process runs

    def curve(self, key: str = "loss") -> list[float]:
        """One metric by step (NaN where a step lacks it)."""
        return [entry.get(key, math.nan) for entry in self.history]

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        data["run_dir"] = str(self.run_dir)
        data["checkpoint"] = str(self.checkpoint) if self.checkpoint else None
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> RunResult:
        data = json.loads(text)
        data["run_dir"] = Path(data["run_dir"])
        data["checkpoint"] = Path(data["checkpoint"]) if data["checkpoint"] else None
        return cls(**data)


@dataclass(frozen=True)
class RunOptions:
    """How one run is carried out and tracked (what it computes is its spec).

    Attributes:
        home: the working directory (runs, MLflow store); default ``$WB_HOME`` or ``./wb-runs``.
        tracking_uri: an MLflow URI; default ``sqlite:///<home>/mlflow.db``.
        experiment: the MLflow experiment; default ``spec.name``.
        tags: extra run tags (a study's axis values, ``axis.<name>``).
        resume: continue from the run's latest checkpoint, in the same MLflow run. Without it a
            run directory that already holds checkpoints is an error (nothing is overwritten).
        track: log to MLflow (off for benchmarks).
        device: ``"cpu"`` or ``"cuda"``; default CUDA when available.
        show_progress: a progress bar on rank 0.
        on_eval: called with (step, eval metrics) after each periodic evaluation; raising
            :class:`Stopped` ends the run there (a search pruning a trial), its MLflow run
            marked KILLED.
        on_step: called with (step, metrics) after every optimizer step (a live display).
    """

    home: str | Path | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)
    resume: bool = False
    track: bool = True
    device: str | None = None
    show_progress: bool = True
    on_eval: Callable[[int, dict[str, float]], None] | None = None
    on_step: Callable[[int, dict[str, float]], None] | None = None
