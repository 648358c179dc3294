"""What a run reports: per-step metrics from the step's reduced totals, gate values, the final
summary, and the progress bar."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from workbench.data.pipeline import PART_NAMES
from workbench.model.flamingo import Flamingo
from workbench.spec import RunSpec
from workbench.train.result import RunResult

#: The totals a step reduces over ranks: per part, its loss sum, labelled tokens, tokens and
#: samples; then the objective (the multiplier-weighted losses).
TOTALS_PER_PART = 4


def new_totals() -> torch.Tensor:
    return torch.zeros(TOTALS_PER_PART * len(PART_NAMES) + 1, dtype=torch.float64)


def step_metrics(totals: torch.Tensor, seconds: float) -> dict[str, float]:
    """``loss/<part>`` per part present, and throughput, from the reduced step totals."""
    metrics: dict[str, float] = {}
    tokens = samples = 0.0
    for k, name in enumerate(PART_NAMES):
        loss, labelled, part_tokens, part_samples = totals[4 * k : 4 * k + 4].tolist()
        if part_samples > 0:
            metrics[f"loss/{name}"] = loss / max(labelled, 1)
            tokens += part_tokens
            samples += part_samples
    metrics["throughput/tokens_per_s"] = tokens / seconds
    metrics["throughput/samples_per_s"] = samples / seconds
    metrics["time/step_s"] = seconds
    return metrics


def gates(model: Flamingo) -> list[tuple[str, nn.Parameter]]:
    """``(gate/attn/<layer>, parameter)`` and ``(gate/ff/<layer>, ...)`` of every block."""
    out = []
    for layer, block in sorted(model.xattn_blocks().items()):
        out.append((f"gate/attn/{layer}", block.attn_gate))
        out.append((f"gate/ff/{layer}", block.ff_gate))
    return out


def final_metrics(history: list[dict[str, float]], seconds: float) -> dict[str, float]:
    """Summary metrics: the mean of each loss over the last tenth of the steps (at least one)."""
    tail = history[-max(len(history) // 10, 1) :]
    final: dict[str, float] = {}
    for key in sorted({k for h in tail for k in h if k.startswith("loss")}):
        values = [h[key] for h in tail if key in h and math.isfinite(h[key])]
        if values:
            final[f"final/{key}"] = sum(values) / len(values)
    if history:
        final["final/nonfinite_steps"] = history[-1].get("nonfinite_steps", 0.0)
        throughput = [h["throughput/tokens_per_s"] for h in tail]
        final["final/tokens_per_s"] = sum(throughput) / len(throughput)
    final["final/wall_s"] = seconds
    return final


def summary(spec: RunSpec, result: RunResult) -> str:
    """One line: the run, each loss from its first step to its final value, throughput."""
    first = result.history[0] if result.history else {}
    parts = [f"{spec.name} [{spec.config_id} seed {spec.train.seed}] {result.steps} steps"]
    for key in ("loss", *(f"loss/{name}" for name in PART_NAMES)):
        if key in first and f"final/{key}" in result.final:
            parts.append(f"{key} {first[key]:.3f} -> {result.final[f'final/{key}']:.3f}")
    parts.append(f"{result.final.get('final/tokens_per_s', 0):,.0f} tok/s")
    parts.append(f"run {result.run_id}" if result.run_id else "untracked")
    return " | ".join(parts)


class Progress:
    """A rich progress bar on rank 0: step, losses, tokens/s and ETA."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.bar: Any = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[losses]}"), TimeRemainingColumn())  # fmt: skip
        self.task = self.bar.add_task("train", total=total, completed=done, losses="")
        self.bar.start()

    def update(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.bar is None:
            return
        losses = " ".join(
            f"{k.removeprefix('loss/')} {v:.3f}"
            for k, v in metrics.items()
            if k.startswith("loss/") and math.isfinite(v)
        )
        tokens = metrics.get("throughput/tokens_per_s", 0.0)
        self.bar.update(self.task, completed=step, losses=f"{losses} | {tokens:,.0f} tok/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
