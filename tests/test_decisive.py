"""--until-decisive: verdicts from pooled intervals by hand, and seeds added to a real study
until its comparisons are decided or the seed budget ends."""

from __future__ import annotations

import math

import polars as pl
import pytest
from helpers import base_spec, experiment_file

from workbench.report.study import study_runs
from workbench.search import Study, run_study
from workbench.search.decisive import cell_of, decide, until_decisive
from workbench.track import default_uri


def test_verdicts_from_intervals_by_hand():
    effects = pl.DataFrame({
        "config": ["above", "below", "inside", "straddles", "no_interval"],
        "ci95_low": [0.03, -0.09, -0.01, -0.01, math.nan],
        "ci95_high": [0.05, -0.021, 0.019, 0.03, math.nan],
    })  # fmt: skip
    expected = {"above": "larger", "below": "larger", "inside": "equivalent",
                "straddles": "undecided", "no_interval": "undecided"}  # fmt: skip
    assert decide(effects, 0.02) == expected
    with pytest.raises(ValueError, match="min-effect"):
        decide(effects, 0.0)
    assert cell_of("mixture=2:1,xattn_every=1") == {"mixture": "2:1", "xattn_every": "1"}


@pytest.mark.slow
def test_seeds_are_added_until_the_budget(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 2,
                                                          "train.checkpoint_every": 0})  # fmt: skip
    path = experiment_file(tmp_path, spec)
    study = Study("decisive", str(path), {"xattn_every": (1, 2)}, seeds=(0, 1),
                  objective="final/loss", register=False)  # fmt: skip
    done = run_study(study, home=tmp_path)
    parent = str(done.user_attrs["mlflow_parent_run_id"])
    uri = default_uri(tmp_path)
    lines: list[str] = []
    verdicts = until_decisive(study, tmp_path, uri, parent, min_effect=1e-6, max_seeds=3,
                              say=lines.append)  # fmt: skip
    runs = study_runs(uri, study.mlflow_experiment(tmp_path), parent)
    # a loss difference of 1e-6 cannot be decided in 2 steps: one more seed each, then stop
    assert sorted(runs["seed"].to_list()) == [0, 0, 1, 1, 2, 2]
    assert verdicts == {"xattn_every=2": "undecided"}
    assert any(line.startswith("adding seed 2 to xattn_every=1") for line in lines)
    assert lines[-1] == "undecided at 3 seeds: xattn_every=2"
