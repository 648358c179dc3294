"""The A/A control: a study comparing the baseline with a no-op variant (its own configuration
id, the same computation) finds no difference: equal objectives seed by seed, and pooled and
per-pair intervals that contain 0."""

from __future__ import annotations

import polars as pl
import pytest
from helpers import base_spec, experiment_file

from workbench.axes import AXES, load_ablations
from workbench.report.effects import study_effects
from workbench.report.study import study_runs
from workbench.search import Study, run_study
from workbench.track import default_uri


@pytest.mark.slow
def test_a_no_op_variant_comes_out_equal(tiny_world, tiny_lm_dirs, tmp_path):
    load_ablations()
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{
        "train.steps": 3, "train.checkpoint_every": 0, "eval.every": 3,
        "eval.data": tiny_world["eval"], "eval.tasks": ("vqa_rank",), "eval.shots": (0,),
        "eval.subset": 4, "eval.validation": tiny_world["validation"]})  # fmt: skip
    noop = AXES.get("control").apply(spec, "noop")
    assert noop.config_id != spec.config_id  # its own runs, not the baseline's again
    study = Study("aa", str(experiment_file(tmp_path, spec)),
                  {"control": ("none", "noop"), "xattn_every": ("1", "2")}, seeds=(0, 1),
                  objective="val/loss/laion", design="one_at_a_time", register=False)  # fmt: skip
    done = run_study(study, home=tmp_path)
    uri = default_uri(tmp_path)
    runs = study_runs(
        uri, study.mlflow_experiment(tmp_path), done.user_attrs["mlflow_parent_run_id"]
    )
    assert runs.height == 6
    by_seed = {
        value: runs.filter((pl.col("axis.control") == value) & (pl.col("axis.xattn_every") == "1"))
        .sort("seed")["val/loss/laion"]
        .to_list()
        for value in ("none", "noop")
    }
    assert by_seed["noop"] == by_seed["none"]  # the same computation, seed by seed
    effects = study_effects(runs, study.objective, study.baseline())
    row = effects.filter(pl.col("value") == "noop").to_dicts()[0]
    assert row["diff"] == 0.0 and row["pooled_diff"] == pytest.approx(0.0, abs=1e-12)
    assert row["pooled_ci95_low"] <= 0.0 <= row["pooled_ci95_high"]
    assert row["pooled_ci95_high"] > row["pooled_ci95_low"]  # a real interval: df from xattn
    assert row["pooled_df"] == 2  # (3 configurations - 1) x (2 seeds - 1)
