"""Training: the loop, data/model parallelism, checkpoints, optimizer and schedules.

``train`` and friends load lazily: ``workbench.spec`` imports ``workbench.train.optim`` (the
schedule registry) and the loop imports ``workbench.spec``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.train.loop import RunResult, home_dir, run, run_dir, train

__all__ = ["RunResult", "home_dir", "run", "run_dir", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from workbench.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
