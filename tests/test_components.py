"""Every registered component, and every axis variant, trains: two optimizer steps of a tiny run
with it (a forward and backward through the whole model, the optimizer, the data pipeline)."""

from __future__ import annotations

import math

import pytest
from helpers import base_spec

from workbench.axes import AXES, load_ablations
from workbench.data.filters import MMC4_FILTERS
from workbench.data.mixture import MIXTURES
from workbench.model.embeddings import SPECIAL_EMBEDDINGS
from workbench.model.lm import LM_ADAPTERS
from workbench.model.resampler import RESAMPLERS
from workbench.spec import SpecError
from workbench.train.loop import train
from workbench.train.optim import SCHEDULES

load_ablations()

CASES = (
    [("lm", name, {}) for name in LM_ADAPTERS.names()]
    + [("special_embeddings", n, {"model.special_embeddings": n})
       for n in SPECIAL_EMBEDDINGS.names()]
    + [("resampler", n, {"model.resampler": n}) for n in RESAMPLERS.names()]
    + [("mixture", n, {"data.mixture": n}) for n in MIXTURES.names()]
    + [("mmc4_filter", n, {"data.mmc4_filter": n}) for n in MMC4_FILTERS.names()]
    + [("schedule", n, {"train.schedule": n}) for n in SCHEDULES.names()]
)  # fmt: skip


def _trains(spec, tmp_path):
    result = train(
        spec.override({"train.steps": 2}), home=tmp_path, track=False, show_progress=False
    )
    assert len(result.history) == 2
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["grad_norm"]) for h in result.history)
    assert all(h["grad_norm"] > 0 for h in result.history)
    return result


@pytest.mark.parametrize(("kind", "name", "changes"), CASES, ids=[f"{k}-{n}" for k, n, _ in CASES])
def test_every_registered_component_trains(kind, name, changes, tiny_world, tiny_lm_dirs, tmp_path):
    lm = tiny_lm_dirs[name] if kind == "lm" else tiny_lm_dirs["llama"]
    changes = {k: v for k, v in changes.items()}
    if changes.get("data.mixture") in ("laion_only", "mmc4_only", "sampled"):
        changes["data.mixture.batch_size"] = 4
    result = _trains(base_spec(tiny_world, lm).override(changes), tmp_path)
    if kind == "mixture":
        sources = {k.removeprefix("loss/") for k in result.history[0] if k.startswith("loss/")}
        expected = {"paired": {"laion", "mmc4"}, "sampled": {"mixed"}}
        assert sources == expected.get(name, {name.removesuffix("_only")})


VARIANTS = [(axis, value) for axis, item in AXES.items() for value in item.values()]


@pytest.mark.parametrize(("axis", "value"), VARIANTS, ids=[f"{a}={v}" for a, v in VARIANTS])
def test_every_axis_variant_trains(axis, value, tiny_world, tiny_lm_dirs, tmp_path):
    base = base_spec(tiny_world, tiny_lm_dirs["llama"])
    if (axis, value) == ("scale", "small"):  # swaps in the small shapes backbones (12 min to
        with pytest.raises(SpecError, match="needs a spec on the shapes backbones"):  # build)
            AXES.get(axis).apply(base, value)
        return
    _trains(AXES.get(axis).apply(base, value), tmp_path)
