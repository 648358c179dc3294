"""Which spec keys ``config_id`` leaves out: those that say how a run executes, and those added
after specs were first hashed while unset or at their default (so earlier ids stay)."""

from __future__ import annotations

from typing import Any

#: Keys added after specs were first hashed: out of ``config_id`` while unset (old ids stay).
LATER_KEYS = frozenset(
    {"model.init_from", "eval.validation", "model.special_embeddings.output",
     "model.special_embeddings.init", "model.special_embeddings.lr_scale"}
)  # fmt: skip
#: ... and those out of it while at their default.
LATER_DEFAULTS: dict[str, Any] = {"eval.at_start": True}
# How a run executes, not what it computes: the training loop makes results independent of the
# number of processes; recomputing activations, saving more often, reading the frozen encoder's
# outputs from the feature cache or compiling changes no number beyond float rounding (tested).
EXECUTION_KEYS = frozenset({"train.strategy", "train.activation_checkpointing",
                            "train.checkpoint_every", "train.keep_checkpoints", "train.log_every",
                            "train.feature_cache", "train.compile"})  # fmt: skip
