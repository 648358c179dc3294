"""The processes an evaluation is split across, and how they share results.

Evaluation never imports the training package: whoever runs it under DDP/FSDP passes a
:class:`Group` whose ``gather`` is that package's collective (the training loop builds one from
its process placement).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Group:
    """The processes an evaluation is split across (one by default)."""

    rank: int = 0
    world_size: int = 1
    gather: Callable[[object], list[object]] | None = None  # every rank's object, in rank order
    # every rank must run the same forward passes (FSDP): generate(synced_gpus=True)
    synced: bool = False

    def all(self, obj: object) -> list[object]:
        """Every rank's ``obj``, in rank order (``[obj]`` for one process)."""
        return [obj] if self.gather is None else self.gather(obj)
