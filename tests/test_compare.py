"""``compare``: variants only against the baseline of their own base configuration, paired by
seed, on hand-built runs with hand-computed numbers; ``runs_frame``'s columns; the rich table."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from workbench.cli import app
from workbench.report import compare, render_comparison, runs_frame

METRIC = "final/loss/laion"
T_975 = {1: 12.706205, 2: 4.302653}  # Student-t 97.5% quantiles by degrees of freedom


def run(base: str | None, config: str, seed: int, value: float, **extra: Any) -> dict[str, Any]:
    """One run's row as ``runs_frame`` gives it (``axis_<name>=`` for ``axis.<name>``)."""
    axes = {f"axis.{k.removeprefix('axis_')}": v for k, v in extra.items() if k.startswith("axis_")}
    rest = {k: v for k, v in extra.items() if not k.startswith("axis_")}
    return {"run_id": f"{config}-{seed}", "status": "FINISHED", "config_id": config,
            "base_config_id": base, "seed": seed, METRIC: value, **axes, **rest}  # fmt: skip


def frame(*runs: dict[str, Any]) -> pl.DataFrame:
    return pl.from_dicts(list(runs), infer_schema_length=None)


def rows(table: pl.DataFrame, base: str) -> dict[str, dict[str, Any]]:
    """``variant`` -> its row, of one base configuration."""
    return {r["variant"]: r for r in table.filter(pl.col("base_config_id") == base).to_dicts()}


# Base A: `wb run` at 200 steps, 3 seeds; base B: a study's 150-step runs, tagged with values.
TWO_BASES = [
    run("A", "a0", 0, 2.0), run("A", "a0", 1, 2.2), run("A", "a0", 2, 2.4),
    run("A", "a2", 0, 2.1, axis_xattn_every="2"), run("A", "a2", 1, 2.4, axis_xattn_every="2"),
    run("A", "a2", 2, 2.5, axis_xattn_every="2"),
    run("B", "b1", 0, 3.0, axis_xattn_every="1", study="s", trial=0),
    run("B", "b1", 1, 3.2, axis_xattn_every="1", study="s", trial=0),
    run("B", "b2", 0, 3.5, axis_xattn_every="2", study="s", trial=1),
    run("B", "b2", 1, 3.5, axis_xattn_every="2", study="s", trial=1),
]  # fmt: skip


def test_runs_of_two_base_configs_are_never_compared_with_each_other():
    table = compare(frame(*TWO_BASES), [METRIC])
    assert table["variant"].to_list() == ["baseline", "xattn_every=2"] * 2  # baseline first
    a, b = rows(table, "A"), rows(table, "B")
    assert a["baseline"]["n"] == 3 and a["baseline"]["mean"] == pytest.approx(2.2)
    # A: diffs 0.1, 0.2, 0.1 -> mean 0.13333, std 0.057735, half-width t(2) * std / sqrt(3)
    half = T_975[2] * 0.057735 / 3**0.5
    assert a["xattn_every=2"]["diff"] == pytest.approx(0.133333, abs=1e-6)
    assert a["xattn_every=2"]["diff_ci95_low"] == pytest.approx(0.133333 - half, abs=1e-5)
    assert a["xattn_every=2"]["diff_ci95_high"] == pytest.approx(0.133333 + half, abs=1e-5)
    assert a["xattn_every=2"]["pairs"] == 3 and a["xattn_every=2"]["note"] == ""
    # B: its runs tagged xattn_every=1 (the declared baseline) are its baseline: diffs 0.5, 0.3
    assert b["baseline"]["n"] == 2 and b["baseline"]["mean"] == pytest.approx(3.1)
    assert b["baseline"]["diff"] == pytest.approx(0.0)
    assert b["xattn_every=2"]["diff"] == pytest.approx(0.4)
    half = T_975[1] * 0.141421 / 2**0.5
    assert b["xattn_every=2"]["diff_ci95_low"] == pytest.approx(0.4 - half, abs=1e-4)
    assert b["xattn_every=2"]["pairs"] == 2
    assert b["baseline"]["axis.xattn_every"] is None  # at baseline: null, like untagged runs


def test_group_by_an_axis_leaves_out_runs_where_another_axis_varies():
    runs = frame(
        run("C", "c0", 0, 1.0), run("C", "c0", 1, 2.0),
        run("C", "c2", 0, 1.5, axis_xattn_every="2"), run("C", "c2", 1, 2.1, axis_xattn_every="2"),
        run("C", "c4", 0, 0.5, axis_xattn_every="4"),
        run("C", "m", 0, 9.0, axis_mixture="1:1"), run("C", "m", 1, 9.0, axis_mixture="1:1"),
        run("C", "c2m", 0, 7.0, axis_xattn_every="2", axis_mixture="1:1"),
        run("C", "c2m", 1, 7.0, axis_xattn_every="2", axis_mixture="1:1"),
        # another axis tagged with its baseline value is at baseline: this run counts
        run("C", "c2", 2, 1.7, axis_xattn_every="2", axis_special_embeddings="trainable"),
    )  # fmt: skip
    table = compare(runs, [METRIC], group_by=["xattn_every"])
    assert table.columns[:4] == ["variant", "base_config_id", "axis.xattn_every", "metric"]
    c = rows(table, "C")
    assert list(c) == ["baseline", "xattn_every=2", "xattn_every=4"]
    assert c["baseline"]["n"] == 2 and c["baseline"]["mean"] == pytest.approx(1.5)
    two = c["xattn_every=2"]  # seeds 0, 1, 2 (mean 1.76667); paired on 0 and 1: 0.5, 0.1
    assert (two["n"], two["pairs"]) == (3, 2)
    assert two["mean"] == pytest.approx(5.3 / 3) and two["diff"] == pytest.approx(0.3)
    four = c["xattn_every=4"]
    assert (four["n"], four["pairs"], four["diff"]) == (1, 1, pytest.approx(-0.5))
    assert four["note"] == "1 pair: run more seeds for an interval"
    ungrouped = rows(compare(runs, [METRIC]), "C")  # by configuration, every variant its own row
    assert set(ungrouped) == {"baseline", "xattn_every=2", "xattn_every=4", "mixture=1:1",
                              "mixture=1:1, xattn_every=2"}  # fmt: skip
    assert ungrouped["mixture=1:1, xattn_every=2"]["diff"] == pytest.approx(5.5)


def test_seeds_pair_and_notes_say_what_is_missing():
    runs = frame(
        run("D", "d0", 0, 1.0), run("D", "d0", 0, 3.0),  # one seed twice: averaged (2.0)
        run("D", "d2", 1, 5.0, axis_xattn_every="2"),  # no seed in common
        run("D", "d9", 0, 0.0, axis_xattn_every="4", status="FAILED"),  # unfinished: left out
        run(None, "old", 0, 4.0, axis_xattn_every="2"),  # untagged base: a base of its own
        run(None, "old0", 0, 4.0),
    )  # fmt: skip
    table = compare(runs, [METRIC])
    d = rows(table, "D")
    assert set(d) == {"baseline", "xattn_every=2"}
    assert (d["baseline"]["n"], d["baseline"]["mean"]) == (1, pytest.approx(2.0))
    assert d["baseline"]["note"] == "1 seed: run more seeds for an interval"
    assert d["xattn_every=2"]["note"] == "no seed in common with the baseline"
    assert (
        rows(table, "old")["xattn_every=2"]["note"] == "no baseline runs in this base configuration"
    )
    assert rows(table, "old0")["baseline"]["diff"] == pytest.approx(0.0)


def test_metrics_keep_their_order_and_unknown_names_fail():
    runs = frame(*[{**r, "eval/vqa/4shot": 0.5} for r in TWO_BASES])
    table = compare(runs, ["final/loss/laion", "eval/vqa/4shot"])
    assert table["metric"].to_list()[:2] == ["final/loss/laion", "eval/vqa/4shot"]
    with pytest.raises(ValueError, match="metrics present"):
        compare(runs, ["final/nope"])
    with pytest.raises(ValueError, match="axes present"):
        compare(runs, [METRIC], group_by=["depth"])


def test_the_rich_table_fits_100_columns():
    runs = frame(*TWO_BASES, run("A", "a4", 0, 2.3, axis_special_embeddings="frozen"))
    text = render_comparison(compare(runs, [METRIC]), width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "base configuration A" in text and "base configuration B" in text
    assert "+0.133 [-0.010, +0.277]" in text  # the diff and its interval in one column
    assert "special_embeddings=frozen" in text and "run more seeds" in text
    header = next(line for line in text.splitlines() if "variant" in line)
    assert header.split()[:4] == ["variant", "metric", "n", "mean"]


def fake_runs(experiment: str) -> list[dict[str, Any]]:
    """``search_runs``' answer for the runs of ``TWO_BASES`` (and a study's parent run)."""
    out = [{"run_id": "parent", "status": "FINISHED", "tags": {"study": "s"}, "metrics": {}}]
    for r in TWO_BASES:
        tags = {k: str(r[k]) for k in ("config_id", "base_config_id", "seed") if r.get(k)}
        tags |= {k: v for k, v in r.items() if k.startswith("axis.")}
        if "study" in r:
            tags |= {"study": r["study"], "trial": str(r["trial"]), "mlflow.parentRunId": "parent"}
        out.append({"run_id": r["run_id"], "status": "FINISHED", "tags": tags,
                    "metrics": {METRIC: r[METRIC], "loss/laion": 1.0}})  # fmt: skip
    return out


@pytest.fixture
def tracked(monkeypatch):
    monkeypatch.setattr("workbench.track.search_runs", lambda uri, name, *a: fake_runs(name))


def test_runs_frame_has_base_config_parent_and_status(tracked):
    runs = runs_frame("sqlite:///unused.db", "shapes_tiny")
    assert runs.height == len(TWO_BASES)  # the parent run is no training run
    assert {"base_config_id", "parent_run_id", "status", "study", "trial"} <= set(runs.columns)
    studied = runs.filter(pl.col("parent_run_id") == "parent")
    assert set(studied["base_config_id"]) == {"B"} and studied.height == 4
    assert runs.filter(pl.col("study").is_null())["parent_run_id"].null_count() == 6
    assert METRIC in runs.columns and "loss/laion" not in runs.columns


def test_wb_compare_filters_a_study(tracked, tmp_path):
    runner = CliRunner()
    args = ["--home", str(tmp_path), "--metric", METRIC]
    out = runner.invoke(app, ["compare", "--study", "s", *args])
    assert out.exit_code == 0, out.output
    assert "base configuration B" in out.output and "base configuration A" not in out.output
    csv = runner.invoke(app, ["compare", *args, "--format", "csv"]).output
    assert csv.splitlines()[0].startswith("variant,base_config_id,config_id,axis.xattn_every,")
    missing = runner.invoke(app, ["compare", "--study", "nope", *args])
    assert missing.exit_code == 2 and "studies there: s" in missing.output


def test_the_quickstart_evaluates_at_the_end_and_prints_a_rich_table(monkeypatch, tmp_path):
    from workbench.quickstart import EVAL_SUBSET, quickstart_spec

    spec = quickstart_spec(tmp_path, steps=7)
    assert (spec.train.steps, spec.eval.every, spec.eval.tasks) == (7, 7, ("vqa",))
    assert spec.eval.subset == EVAL_SUBSET and spec.train.checkpoint_every == 0
    one_seed = frame(*[r for r in TWO_BASES if r["base_config_id"] == "B" and r["seed"] == 0])
    table = compare(one_seed, [METRIC])
    monkeypatch.setattr("workbench.quickstart.quickstart", lambda *a, **k: table)
    out = CliRunner().invoke(app, ["quickstart", "--steps", "7", "--home", str(tmp_path)])
    assert out.exit_code == 0, out.output
    table_lines = out.output.split("\n\nIntervals")[0].splitlines()
    assert table_lines[0] == "base configuration B" and max(map(len, table_lines)) <= 100
    assert "+0.500" in out.output and "1 pair *" in out.output
    assert f"wb quickstart --seeds 0,1 --steps 7 --home {tmp_path}" in out.output
