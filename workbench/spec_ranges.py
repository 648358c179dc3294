"""The ranges of a spec's numbers: a rule of every :meth:`~workbench.spec.RunSpec.override`
(registered on import, by :mod:`workbench.components`), so a value that parses but makes no
sense is refused before anything is written. Non-finite floats are refused as they are parsed."""

from __future__ import annotations

import dataclasses

from workbench.spec import Choice, RunSpec, SpecError, spec_check

#: The lower bound of each numeric leaf that has one; a component's integer options (batch
#: sizes, warmup steps, k) are never negative either. Floats are finite everywhere.
AT_LEAST: dict[str, float] = {
    "train.steps": 1, "train.grad_accum": 1, "train.log_every": 1, "train.keep_checkpoints": 1,
    "train.checkpoint_every": 0, "train.weight_decay": 0, "train.clip_norm": 0,
    "data.workers": 0, "data.shuffle_buffer": 0, "data.laion.max_tokens": 1,
    "data.mmc4.max_tokens": 1, "data.mmc4.max_images": 1, "data.mmc4.min_images": 0,
    "data.mmc4.min_image_bytes": 0, "model.xattn_heads": 1, "model.xattn_dim_head": 1,
    "model.xattn_ff_mult": 1, "eval.every": 0, "eval.subset": 1, "eval.trials": 1,
    "eval.query_size": 1, "eval.batch_size": 1,
}  # fmt: skip
_MEANING = {"train.checkpoint_every": " (0: never)", "train.clip_norm": " (0: no clipping)",
            "eval.every": " (0: never)"}  # fmt: skip
PROBABILITIES = ("data.laion.hflip_prob", "data.mmc4.hflip_prob",
                 "data.mmc4.single_image_keep_prob")  # fmt: skip


@spec_check
def _in_range(spec: RunSpec) -> None:
    flat = spec.flatten()
    if not spec.train.lr > 0:
        raise SpecError(f"train.lr: must be > 0, got {spec.train.lr!r}")
    for key, low in AT_LEAST.items():
        if flat[key] < low:
            raise SpecError(f"{key}: must be >= {low:g}{_MEANING.get(key, '')}, got {flat[key]!r}")
    for key in PROBABILITIES:
        if not 0.0 <= flat[key] <= 1.0:
            raise SpecError(f"{key}: a probability must be in [0, 1], got {flat[key]!r}")
    if spec.data.mmc4.min_images > spec.data.mmc4.max_images:
        raise SpecError(
            f"data.mmc4.min_images ({spec.data.mmc4.min_images}) exceeds data.mmc4.max_images "
            f"({spec.data.mmc4.max_images})"
        )
    if any(k < 0 for k in spec.eval.shots):
        raise SpecError(f"eval.shots: shot counts must be >= 0, got {spec.eval.shots!r}")
    for section in ("model", "data", "train"):
        for field_name, choice in vars(getattr(spec, section)).items():
            if not (isinstance(choice, Choice) and dataclasses.is_dataclass(choice.options)):
                continue
            for name, value in vars(choice.options).items():
                if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                    key = f"{section}.{field_name}.{name}"
                    raise SpecError(f"{key}: must be >= 0, got {value}")
