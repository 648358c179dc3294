"""The study report: effects against the declared baseline (not the most frequent value), its
statistics on hand-computed cases, the study's runs only (whatever else the experiment holds),
no trace of a study that has not run, the headline effects on the parent run, the page and the
effects plot."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from workbench import track
from workbench.report.effects import holm, mean_ci, paired_p, study_effects
from workbench.report.html import to_html
from workbench.report.plots import draw_effects, effect_bars, plot_effects
from workbench.report.study import study_runs
from workbench.search import Study, open_study, report_study, storage_for
from workbench.spec import SpecError

T_975_DF1 = math.tan(math.pi * 0.475)  # Student t quantile, 1 degree of freedom (Cauchy)
T_975_DF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # (2p-1)/sqrt(2p(1-p)) for 2 degrees: 4.3027
METRIC = "final/loss/mmc4"
BASELINES = {"xattn_every": "1", "special_embeddings": "trainable"}


def p_df1(t: float) -> float:
    return 1 - 2 / math.pi * math.atan(abs(t))  # two-sided, 1 degree of freedom


def p_df2(t: float) -> float:
    return 1 - abs(t) / math.sqrt(2 + t * t)  # two-sided, 2 degrees of freedom


def test_the_interval_and_p_of_three_differences():
    mean, std, low, high = mean_ci([1.0, 2.0, 3.0])
    assert (mean, std) == pytest.approx((2.0, 1.0))
    assert (low, high) == pytest.approx(
        (2 - T_975_DF2 / math.sqrt(3), 2 + T_975_DF2 / math.sqrt(3))
    )
    assert paired_p([1.0, 2.0, 3.0]) == pytest.approx(p_df2(2 * math.sqrt(3)))  # t = 2/(1/sqrt 3)
    assert math.isnan(paired_p([1.0])) and math.isnan(paired_p([0.5, 0.5]))  # untestable
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def runs(cells: dict[tuple[str, ...], list[tuple[int, float]]], axes: list[str]) -> pl.DataFrame:
    """A study's runs by hand: (axis values) -> [(seed, metric)]."""
    return pl.DataFrame(
        {"seed": seed, METRIC: value, **dict(zip([f"axis.{a}" for a in axes], cell, strict=True))}
        for cell, values in cells.items()
        for seed, value in values
    )


def row(effects: pl.DataFrame, axis: str, value: str) -> dict:
    return effects.filter((pl.col("axis") == axis) & (pl.col("value") == value)).row(0, named=True)


def test_an_unbalanced_study_is_compared_with_its_declared_baseline():
    # more runs of the variant than of the baseline: the most frequent value is `frozen`
    cells = {("trainable",): [(0, 1.0), (1, 2.0)], ("frozen",): [(0, 1.5), (1, 2.75), (2, 9.0)]}
    frame = runs(cells, ["special_embeddings"])
    assert frame["axis.special_embeddings"].mode().to_list() == ["frozen"]
    effects = study_effects(frame, METRIC, {"special_embeddings": "trainable"})
    assert effects["value"].to_list() == ["trainable", "frozen"]  # the baseline first
    assert effects.equals(study_effects(frame, METRIC, {"axis.special_embeddings": "trainable"}))
    base, frozen = (
        row(effects, "special_embeddings", "trainable"),
        row(effects, "special_embeddings", "frozen"),
    )
    assert base["baseline"] and not frozen["baseline"]
    assert (base["n"], base["mean"], base["diff"]) == (2, pytest.approx(1.5), pytest.approx(0.0))
    assert (frozen["n"], frozen["mean"]) == (3, pytest.approx(13.25 / 3))
    # paired on seeds 0 and 1 only: differences 0.5, 0.75 (mean 0.625, standard error 0.125)
    assert frozen["pairs"] == 2 and frozen["diff"] == pytest.approx(0.625)  # frozen is worse
    assert (frozen["diff_ci95_low"], frozen["diff_ci95_high"]) == pytest.approx(
        (0.625 - T_975_DF1 * 0.125, 0.625 + T_975_DF1 * 0.125)
    )
    assert frozen["p"] == pytest.approx(p_df1(5.0)) and frozen["p_holm"] == pytest.approx(
        frozen["p"]
    )


TWO_AXES = {
    ("1", "trainable"): [(0, 2.0), (1, 3.0), (2, 4.0)],
    ("2", "trainable"): [(0, 0.5), (0, 1.5), (1, 1.0), (2, 1.0)],  # seed 0 twice: mean 1.0
    ("1", "frozen"): [(0, 2.5), (1, 3.5), (2, 5.0)],
    ("2", "frozen"): [(0, 100.0)],  # a grid cell: neither axis at baseline, in no comparison
}


def test_each_axis_against_the_baseline_with_the_other_at_baseline():
    frame = runs(TWO_AXES, ["xattn_every", "special_embeddings"])
    frame = frame.with_columns(pl.lit(None, pl.String).alias("axis.mmc4_threshold"))  # not ours
    effects = study_effects(frame, METRIC, BASELINES)
    assert effects.select("axis", "value", "baseline").rows() == [
        ("xattn_every", "1", True), ("xattn_every", "2", False),
        ("special_embeddings", "trainable", True), ("special_embeddings", "frozen", False),
    ]  # fmt: skip
    every2, frozen = row(effects, "xattn_every", "2"), row(effects, "special_embeddings", "frozen")
    # xattn_every=2: differences -1, -2, -3 (better); frozen: 0.5, 0.5, 1.0 (worse)
    assert (every2["n"], every2["mean"], every2["diff"]) == (
        3,
        pytest.approx(1.0),
        pytest.approx(-2.0),
    )
    half = T_975_DF2 / math.sqrt(3)
    assert (every2["diff_ci95_low"], every2["diff_ci95_high"]) == pytest.approx(
        (-2 - half, -2 + half)
    )
    assert frozen["diff"] == pytest.approx(2 / 3) and frozen["n"] == 3
    assert frozen["diff_ci95_low"] == pytest.approx(2 / 3 - T_975_DF2 / 6)  # std sqrt(1/12)
    p_every2, p_frozen = p_df2(-2 * math.sqrt(3)), p_df2(4.0)  # t = 2/3 / (1/6) = 4
    assert (every2["p"], frozen["p"]) == pytest.approx((p_every2, p_frozen))
    # Holm over the two comparisons: 2 x the smaller p, and the larger never below it
    assert (every2["p_holm"], frozen["p_holm"]) == pytest.approx((2 * p_frozen, 2 * p_frozen))
    with pytest.raises(ValueError, match=r"axis\.mixture"):
        study_effects(frame, METRIC, {**BASELINES, "mixture": "2:1"})


def test_the_effects_plot_shows_paired_differences_around_zero(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    effects = study_effects(
        runs(TWO_AXES, ["xattn_every", "special_embeddings"]), METRIC, BASELINES
    )
    bars = effect_bars(effects)
    assert [label for label, *_ in bars] == ["xattn_every=2", "special_embeddings=frozen"]
    assert [b[1] for b in bars] == pytest.approx([-2.0, 2 / 3])
    fig, ax = plt.subplots()
    draw_effects(ax, bars, METRIC)
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "xattn_every=2",
        "special_embeddings=frozen",
    ]
    points, zero = ax.lines[0], ax.lines[-1]
    assert list(points.get_xdata()) == pytest.approx([-2.0, 2 / 3])
    assert list(zero.get_xdata()) == [0.0, 0.0]  # the line of no effect
    plt.close(fig)
    assert plot_effects(effects, METRIC, tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


def test_the_page_renders_markdown_with_its_images_inline():
    png = b"\x89PNG not really"
    page = to_html(
        "# Study `s`\n\n| axis | value |\n|---|---|\n| special_embeddings | frozen |\n\n"
        "![effects](effects.png)\n\n<script>x</script>\n",
        {"effects.png": png},
    )
    assert "<h1>Study <code>s</code></h1>" in page
    assert "<th>axis</th>" in page and "<td>frozen</td>" in page
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert "<script>" not in page  # raw HTML is text, not markup


def experiment(folder: Path) -> str:
    path = folder / "report_exp.py"
    path.write_text("from workbench.spec import RunSpec\n\n\ndef spec():\n"
                    "    return RunSpec(name='report-exp')\n")  # fmt: skip
    return str(path)


def log_run(uri: str, experiment_id: str, tags: dict[str, str], value: float, end: bool = True):
    client = MlflowClient(uri)
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    client.log_metric(run_id, METRIC, value)
    for step, loss in enumerate((3.0, 2.0), start=1):
        client.log_metric(run_id, "loss/mmc4", loss, step=step)
    if end:
        client.set_terminated(run_id)


def test_a_study_report_reads_the_study_runs_only_and_logs_its_effects(tmp_path):
    home = tmp_path / "home"
    study = Study("report-among-others", experiment(tmp_path),
                  {"xattn_every": ("1", "2"), "special_embeddings": ("trainable", "frozen")},
                  seeds=(0, 1, 2), design="one_at_a_time")  # fmt: skip
    uri = track.default_uri(home)
    experiment_id = track.prepare(uri, "report-exp", home)
    parent = track.study_parent_run(uri, "report-exp", study.name, 0, home)
    other = track.study_parent_run(uri, "report-exp", "another-study", 1, home)
    for (every, special), values in TWO_AXES.items():
        for seed, value in values:
            tags = {"config_id": f"{every}{special}", "seed": str(seed), "study": study.name,
                    "mlflow.parentRunId": parent, "axis.xattn_every": every,
                    "axis.special_embeddings": special}  # fmt: skip
            log_run(uri, experiment_id, tags, value)
    log_run(uri, experiment_id, {**tags, "seed": "1"}, 1000.0, end=False)  # still running
    # the quickstart's runs and another study's, in the same experiment
    log_run(
        uri, experiment_id, {"config_id": "q", "seed": "0", "axis.mmc4_threshold": "0.28"}, 50.0
    )
    log_run(uri, experiment_id, {"config_id": "o", "seed": "0", "study": "another-study",
                                 "mlflow.parentRunId": other, "axis.xattn_every": "2",
                                 "axis.special_embeddings": "trainable"}, 100.0)  # fmt: skip
    mine = study_runs(uri, "report-exp", parent)
    assert mine.height == 11 and set(mine["parent_run_id"]) == {parent}
    assert [c for c in mine.columns if c.startswith("axis.")] == [
        "axis.xattn_every", "axis.special_embeddings"]  # fmt: skip
    open_study(study, storage_for(None, home)).set_user_attr("mlflow_parent_run_id", parent)

    paths = report_study(study, home)
    metrics = MlflowClient(uri).get_run(parent).data.metrics
    half = T_975_DF2 / math.sqrt(3)
    assert metrics["effect/xattn_every/2"] == pytest.approx(-2.0)
    low, high = metrics["effect/xattn_every/2/ci95_low"], metrics["effect/xattn_every/2/ci95_high"]
    assert (low, high) == pytest.approx((-2 - half, -2 + half))
    assert metrics["effect/special_embeddings/frozen"] == pytest.approx(2 / 3)
    assert not [k for k in metrics if k.startswith("effect/") and "trainable" in k]  # the baseline
    markdown = paths["markdown"].read_text()
    assert (
        "mmc4_threshold" not in markdown
        and "`xattn_every=1, special_embeddings=trainable`" in markdown
    )
    plots = [p for p in paths.values() if p.suffix == ".png"]
    assert {p.name for p in plots} >= {"effects.png", "learning_curves.png", "curves_flops.png",
                                       "curves_images.png"}  # fmt: skip
    assert paths["html"].read_text().count("data:image/png;base64,") == len(plots)
    logged = [a.path for a in MlflowClient(uri).list_artifacts(parent, "report")]
    assert "report/report.html" in logged and "report/effects.png" in logged


def test_a_study_that_has_not_run_writes_nothing_and_exits_2(tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app

    home = tmp_path / "home"
    Study("report-never-ran", experiment(tmp_path), {"xattn_every": (1, 2)})
    report = ["report", "report-never-ran", "--home", str(home)]
    out = CliRunner().invoke(app, report)
    assert out.exit_code == 2 and "has no finished runs" in out.output, out.output
    assert not home.exists()  # no journal, no report folder, no MLflow store

    # a journal that holds another study's trials is left as it was
    other = Study("report-other-ran", experiment(tmp_path), {"xattn_every": (1, 2)})
    open_study(other, storage_for(None, home))
    journal = (home / "optuna.journal").read_bytes()
    out = CliRunner().invoke(app, report)
    assert out.exit_code == 2 and "has no finished runs" in out.output, out.output
    assert (home / "optuna.journal").read_bytes() == journal
    assert sorted(p.name for p in home.iterdir()) == ["optuna.journal"]

    # started (its parent run exists) but no run finished yet
    with pytest.raises(SpecError, match="has no finished runs"):
        report_study(other, home)
    parent = track.study_parent_run(track.default_uri(home), "report-exp", other.name, 0, home)
    open_study(other, storage_for(None, home)).set_user_attr("mlflow_parent_run_id", parent)
    with pytest.raises(SpecError, match="no finished runs in experiment 'report-exp'"):
        report_study(other, home)
    assert not (home / "reports").exists()


def test_the_report_says_what_the_baseline_must_beat(tiny_world, tiny_lm_dirs, tmp_path):
    from helpers import base_spec, experiment_file

    from workbench.eval.scoring import majority_baseline
    from workbench.eval.tasks import load_task
    from workbench.search.reporting import _floors

    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{
        "eval.data": tiny_world["eval"], "eval.subset": 6})  # fmt: skip
    study = Study("floors", str(experiment_file(tmp_path, spec)), {"xattn_every": ("1", "2")},
                  objective="eval/vqa_rank/4shot", direction="maximize",
                  register=False)  # fmt: skip
    runs = pl.DataFrame({"run_id": ["a", "b", "c"], "axis.xattn_every": ["1", "1", "2"],
                         "eval/vqa_rank/4shot": [0.4, 0.6, 0.9]})  # fmt: skip
    histories = {"a": [(0, 0.1), (250, 0.3)], "b": [(0, 0.2)], "c": [(0, 0.7)]}
    floor = majority_baseline(load_task("vqa_rank", Path(tiny_world["eval"])), 6)
    text = "".join(_floors(study, tmp_path, runs, lambda run, key: histories[run]))
    assert text == (
        "## What the baseline must beat\nThe baseline's `eval/vqa_rank/4shot` is 0.500 (mean of "
        f"2 runs) against {floor:.3f} for always giving the most frequent answer of each "
        "question's answer set on the same 6 items, and 0.150 for the untrained model (step 0).\n"
    )
    without = "".join(_floors(study, tmp_path, runs, lambda run, key: []))
    assert "the untrained model was not evaluated here (`eval.at_start` off)" in without
