"""``wb search STUDY --until-decisive``: more seeds where a comparison is still undecided.

A comparison is decided when its pooled 95% interval (the configuration x seed model of the
whole study, :mod:`workbench.report.pooled`) lies beyond the smallest effect that matters,
entirely above ``+D`` or below ``-D`` (``larger``), or entirely inside ``(-D, +D)``
(``equivalent``: no effect as large as D). Otherwise it is ``undecided``, and the variant and
the baseline each run one more seed, as extra MLflow child runs of the study's parent run
(tagged like its trials' runs); then the study is fitted again, until every comparison is
decided or the variants reach ``max_seeds``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from workbench.study import Study


def decide(effects: pl.DataFrame, min_effect: float) -> dict[str, str]:
    """Each configuration's verdict from its pooled interval (``config``, ``ci95_low``,
    ``ci95_high``): ``larger``, ``equivalent`` or ``undecided`` (also without an interval)."""
    if not min_effect > 0:
        raise ValueError(f"--min-effect must be > 0, got {min_effect}")
    verdicts = {}
    for row in effects.iter_rows(named=True):
        low, high = row["ci95_low"], row["ci95_high"]
        if low is None or high is None or low != low or high != high:  # no interval yet
            verdicts[row["config"]] = "undecided"
        elif low > min_effect or high < -min_effect:
            verdicts[row["config"]] = "larger"
        elif -min_effect < low and high < min_effect:
            verdicts[row["config"]] = "equivalent"
        else:
            verdicts[row["config"]] = "undecided"
    return verdicts


def cell_of(label: str) -> dict[str, str]:
    """The axis values of a configuration label (``axis=value`` joined by commas)."""
    return dict(part.split("=", 1) for part in label.split(","))


def until_decisive(
    study: Study, home: Path, uri: str, parent_run_id: str, *, min_effect: float,
    max_seeds: int, say: Callable[[str], None] = print,
) -> dict[str, str]:  # fmt: skip
    """Adds seeds to the undecided comparisons of ``study`` (which has run) until each is
    decided or has ``max_seeds`` seeds; the final verdict of each configuration."""
    from workbench.axes import apply_all
    from workbench.report.effects import configurations
    from workbench.report.study import study_runs
    from workbench.report.variance import study_fit
    from workbench.search.objective import _run_seed

    base = study.base_spec(home)
    baseline = study.baseline()
    while True:
        runs = study_runs(uri, study.mlflow_experiment(home), parent_run_id)
        fitted = study_fit(runs, study.objective, baseline)
        verdicts = decide(fitted.effects, min_effect)
        labelled, base_label = configurations(runs, {f"axis.{k}": v for k, v in baseline.items()})
        seeds = {c: set(g["seed"].to_list()) for (c,), g in labelled.group_by("config")}
        undecided = [c for c, v in verdicts.items() if v == "undecided"]
        growing = [c for c in undecided if len(seeds[c]) < max_seeds]
        for row in fitted.effects.iter_rows(named=True):
            say(f"{row['config']}: {row['diff']:+.4f} [{row['ci95_low']:+.4f}, "
                f"{row['ci95_high']:+.4f}] over {len(seeds[row['config']])} seeds: "
                f"{verdicts[row['config']]}")  # fmt: skip
        if not growing:
            break
        seed = max(max(seeds[c]) for c in [base_label, *growing]) + 1  # one seed for all: pairs
        for label in [base_label, *growing]:
            cell = cell_of(label)
            tags = {"mlflow.parentRunId": parent_run_id, "study": study.name, "trial": -1,
                    "until_decisive": "1", "base_config_id": base.config_id,
                    **{f"axis.{k}": v for k, v in cell.items()}}  # fmt: skip
            say(f"adding seed {seed} to {label}")
            spec = apply_all(base, cell).override({"train.seed": seed})
            _run_seed(spec, study, home, uri, tags, lambda *_: None, lambda *_: None)
    left = [c for c, v in verdicts.items() if v == "undecided"]
    say(
        f"undecided at {max_seeds} seeds: {', '.join(left)}" if left else "every comparison decided"
    )
    return verdicts
