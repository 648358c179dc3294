"""Optimizer groups, and the ``schedule`` component: learning-rate factor by optimizer step.

Steps count optimizer updates, not micro-batches (the reference's linear and cosine schedules
counted micro-batches, so gradient accumulation stretched them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from workbench.registry import Registry


class Schedule(Protocol):
    def __call__(self, step: int, total_steps: int) -> float:
        """The factor multiplying the base learning rate at optimizer step ``step`` (from 0)."""
        ...


SCHEDULES: Registry[type[Schedule]] = Registry("schedule")


def _warmup(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


@SCHEDULES.register("constant")
@dataclass(frozen=True)
class Constant:
    """Linear warmup, then constant (the reference's default; it warms up over 1,875 steps)."""

    warmup_steps: int = 1875

    def __call__(self, step: int, total_steps: int) -> float:
        return _warmup(step, self.warmup_steps)


@SCHEDULES.register("linear")
@dataclass(frozen=True)
class Linear:
    """Linear warmup, then linear decay to 0 at ``total_steps``."""

    warmup_steps: int = 1875

    def __call__(self, step: int, total_steps: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        remaining = max(total_steps - self.warmup_steps, 1)
        return max(0.0, 1.0 - (step - self.warmup_steps) / remaining)


@SCHEDULES.register("cosine")
@dataclass(frozen=True)
class Cosine:
    """Linear warmup, then cosine decay to ``final_fraction`` of the base rate."""

    warmup_steps: int = 1875
    final_fraction: float = 0.0

    def __call__(self, step: int, total_steps: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        progress = min((step - self.warmup_steps) / max(total_steps - self.warmup_steps, 1), 1.0)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.final_fraction + (1 - self.final_fraction) * cosine


def special_lr_scale(model: torch.nn.Module) -> float:
    """The special rows' learning-rate factor (``model.special_embeddings.lr_scale``), 1 unset."""
    core = getattr(model, "module", model)  # DDP wraps the model
    choice = getattr(getattr(core, "config", None), "special_embeddings", None)
    scale = getattr(getattr(choice, "options", choice), "lr_scale", None)
    return 1.0 if scale is None else float(scale)


def parameter_groups(
    model: torch.nn.Module, weight_decay: float
) -> list[dict[str, list[torch.nn.Parameter] | float]]:
    """AdamW groups as the reference: weight decay on the cross-attention blocks only (gates
    included), none on the resampler or special-token rows; the special rows in a group of
    their own with an ``lr_scale`` (the loop multiplies the step's rate by it). Frozen parameters
    are left out, so the optimizer never holds a backbone weight."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    special: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if ".xattn." in f".{name}":
            decay.append(param)
        else:
            (special if name.endswith(".special") else no_decay).append(param)
    groups: list[dict[str, list[torch.nn.Parameter] | float]] = [
        {"params": decay, "weight_decay": weight_decay, "lr_scale": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
    ]
    if special:
        groups.append({"params": special, "weight_decay": 0.0,
                       "lr_scale": special_lr_scale(model)})  # fmt: skip
    return groups


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (the reference's betas and eps), fused into one
    kernel per step where the parameters are plain tensors (``benchmarks/cpu_step.py``'s
    trainable set: 14 ms a step against 62 ms for PyTorch's CPU default, the per-parameter
    loop); FSDP's sharded parameters get the default implementation."""
    from torch.distributed.tensor import DTensor

    fused = not any(isinstance(p, DTensor) for p in model.parameters())
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, fused=fused or None)
