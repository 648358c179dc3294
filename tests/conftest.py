"""Shared fixtures: tiny random LMs of every registered family, written once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the hub (set before imports)

from pathlib import Path

import pytest
import torch
from transformers.utils import logging as hf_logging

import workbench.components  # noqa: F401  (specs are built of registered components)
from workbench.model.lm import LM_ADAPTERS
from workbench.model.tiny import save_tiny_lm

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_lm_dirs(tmp_path_factory) -> dict[str, Path]:
    """One saved tiny LM + tokenizer per registered LM family."""
    root = tmp_path_factory.mktemp("tiny_lms")
    return {family: save_tiny_lm(family, root / family) for family in LM_ADAPTERS.names()}


@pytest.fixture(scope="session")
def shapes_backbones(tmp_path_factory):
    """The "tiny" pretrained shapes CLIP and LM, built once per test session (about 2.5 min),
    or found in ``$WB_TEST_BACKBONES`` (a backbones cache CI shares with its smoke run; the
    cache is keyed by the recipe, so a stale one is never used)."""
    from workbench.backbones.shapes import build_shapes_backbones

    cache = os.environ.get("WB_TEST_BACKBONES") or tmp_path_factory.mktemp("backbones")
    return build_shapes_backbones(cache, "tiny", seed=0, show_progress=False)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> dict[str, str]:
    """A small 32-pixel shapes world (for wb-tiny-vit): shard patterns by source, and ``eval``:
    its evaluation directory; ``validation``: its held-out validation shards."""
    from workbench.data.shapes import (
        write_planted_pairs,
        write_shapes_world,
        write_validation_sets,
    )
    from workbench.data.stream import shard_pattern

    out = tmp_path_factory.mktemp("world")
    shards = write_shapes_world(
        out, n_pairs=160, n_docs=120, n_eval=24, image_size=32, per_shard=40
    )
    write_validation_sets(out / "validation", n_pairs=24, n_docs=16, image_size=32, per_shard=12)
    write_planted_pairs(out, n_pairs=160, image_size=32, per_shard=40)
    return {
        **{name: shard_pattern(paths) for name, paths in shards.items()},
        "eval": str(out / "eval"),
        "validation": str(out / "validation"),
    }
