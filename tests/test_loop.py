"""The researcher's loop end to end, in the README's order: quickstart-like runs (``wb run`` of a
baseline and a variant at 4 steps) and a study (3 steps) log to one home and one MLflow
experiment; then ``wb report`` reads the study's runs only, against the declared baseline, and
``wb compare`` keeps the two base configurations apart. Every effect is checked against the
per-seed differences computed here from the runs' own metrics."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
import pytest
from helpers import base_spec, experiment_file
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from workbench import runs, track
from workbench.cli import app
from workbench.report import runs_frame
from workbench.search import Study, run_study
from workbench.train.result import RunOptions

METRIC = "final/loss/mmc4"  # the study's objective


def paired_mean(frame: pl.DataFrame, axis: str, value: str, baseline_value: str | None) -> float:
    """The mean over seeds of (variant - baseline) of ``METRIC``, computed by hand."""
    column = pl.col(f"axis.{axis}")
    at_base = column.is_null() if baseline_value is None else column == baseline_value
    base = dict(frame.filter(at_base).select("seed", METRIC).iter_rows())
    variant = dict(frame.filter(column == value).select("seed", METRIC).iter_rows())
    assert sorted(base) == sorted(variant) == [0, 1]
    return sum(variant[s] - base[s] for s in base) / len(base)


def table(output: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(output)))


@pytest.mark.slow
def test_quickstart_runs_and_a_study_in_one_home_report_and_compare_right(
    tiny_world, tiny_lm_dirs, tmp_path
):
    home, wb = tmp_path / "home", CliRunner()
    spec = base_spec(
        tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 3, "train.checkpoint_every": 0}
    )
    path = experiment_file(tmp_path, spec, "loop_experiment")
    options = RunOptions(home=home, show_progress=False)
    for ablate in ({}, {"xattn_every": "2"}):  # wb run ... --set train.steps=4 [--ablate ...]
        runs.run_seeds(runs.resolve(path, {"train.steps": 4}, ablate, home), (0, 1), options)
    study = Study("loop-study", str(path), {"special_embeddings": ("trainable", "frozen")},
                  seeds=(0, 1))  # fmt: skip
    done = run_study(study, home=home, live=False)

    uri = track.default_uri(home)
    frame = runs_frame(uri, spec.name)
    studied, quick = (
        frame.filter(pl.col("study") == study.name),
        frame.filter(pl.col("study").is_null()),
    )
    assert (studied.height, quick.height) == (4, 4)
    assert studied["base_config_id"].n_unique() == quick["base_config_id"].n_unique() == 1
    study_base, quick_base = studied["base_config_id"][0], quick["base_config_id"][0]
    assert study_base != quick_base  # 3 steps vs 4: two base configurations
    frozen_effect = paired_mean(studied, "special_embeddings", "frozen", "trainable")
    xattn_effect = paired_mean(quick, "xattn_every", "2", None)
    assert frozen_effect != 0 and xattn_effect != 0

    # wb report: the declared baseline (trainable), the study's runs only, the effect's sign
    report = wb.invoke(app, ["report", study.name, "--home", str(home)])
    assert report.exit_code == 0, report.output
    written = dict(line.split(": ", 1) for line in report.output.splitlines() if ": " in line)
    markdown = Path(written["markdown"]).read_text()
    assert "`special_embeddings=trainable`" in markdown and "xattn_every" not in markdown
    parent = MlflowClient(uri).get_run(done.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["effect/special_embeddings/frozen"] == pytest.approx(frozen_effect)

    # wb compare: each base configuration against its own baseline, paired on both seeds
    base_args = ["compare", "--experiment", spec.name, "--home", str(home), "--metric", METRIC]
    rows = table(wb.invoke(app, [*base_args, "--format", "csv"]).output)
    by = {(r["base_config_id"], r["variant"]): r for r in rows}
    assert set(by) == {
        (quick_base, "baseline"), (quick_base, "xattn_every=2"),
        (study_base, "baseline"), (study_base, "special_embeddings=frozen"),
    }  # fmt: skip
    assert float(by[quick_base, "xattn_every=2"]["diff"]) == pytest.approx(xattn_effect)
    assert float(by[study_base, "special_embeddings=frozen"]["diff"]) == pytest.approx(
        frozen_effect
    )
    assert {r["pairs"] for r in rows} == {"2"} and {r["n"] for r in rows} == {"2"}

    # --group-by one axis: its values with the others at baseline; the study family keeps
    # only its baseline (its frozen runs vary another axis)
    grouped = table(
        wb.invoke(app, [*base_args, "--group-by", "xattn_every", "--format", "csv"]).output
    )
    assert sorted((r["base_config_id"] == quick_base, r["variant"]) for r in grouped) == [
        (False, "baseline"), (True, "baseline"), (True, "xattn_every=2")]  # fmt: skip
    only_study = table(
        wb.invoke(app, [*base_args, "--study", study.name, "--format", "csv"]).output
    )
    assert {r["base_config_id"] for r in only_study} == {study_base}
    shown = wb.invoke(app, base_args)  # the rich table
    assert shown.exit_code == 0 and f"base configuration {quick_base}" in shown.output
    assert max(len(line) for line in shown.output.splitlines()) <= 100
