"""The pooled configuration x seed model, the item variance component and the power table, each
on a case computed by hand."""

from __future__ import annotations

import math

import polars as pl
import pytest

from workbench.report.effects import paired_p, study_effects
from workbench.report.pooled import (
    PooledFit,
    fit,
    item_variance,
    items_needed,
    power,
    power_table,
    seeds_needed,
)

T_975_DF4 = 2.7764451051977987  # Student-t 97.5% quantile, 4 degrees of freedom (tables)


def runs(table: dict[str, list[float]]) -> pl.DataFrame:
    rows = [(c, s, v) for c, values in table.items() for s, v in enumerate(values)]
    return pl.DataFrame(rows, schema=["config", "seed", "y"], orient="row")


def test_three_configurations_by_three_seeds():
    # y:        s0 s1 s2   row means 2, 3, 2; column means 1, 7/3, 11/3; grand 7/3
    #   base     1  2  3   residuals  1/3    0  -1/3
    #   a        2  4  3              1/3    1  -4/3
    #   b        0  1  5             -2/3   -1   5/3   SS = 22/3 over (3-1)(3-1) = 4 df
    fitted = fit(runs({"base": [1, 2, 3], "a": [2, 4, 3], "b": [0, 1, 5]}), "y", "base")
    assert fitted.df == 4 and fitted.sigma2 == pytest.approx(11 / 6)
    a, b = fitted.effects.sort("config").to_dicts()
    assert a["config"] == "a" and a["diff"] == pytest.approx(1.0)
    se = math.sqrt(2 * (11 / 6) / 3)  # sqrt(11/9)
    assert a["se"] == pytest.approx(se) and a["pairs"] == 3
    assert a["ci95_low"] == pytest.approx(1 - T_975_DF4 * se)
    assert a["ci95_high"] == pytest.approx(1 + T_975_DF4 * se)
    assert b["diff"] == pytest.approx(0.0, abs=1e-12) and b["p"] == pytest.approx(1.0)
    # Holm over the two comparisons: the smaller p doubled, the larger one at least as large
    assert a["p_holm"] == pytest.approx(min(1.0, 2 * a["p"]))
    assert b["p_holm"] == pytest.approx(1.0)


def test_two_configurations_reduce_to_the_paired_t_test():
    # diffs 1, 0, 2, 1: mean 1, variance 2/3, standard error sqrt(2/3 / 4)
    fitted = fit(runs({"base": [1, 2, 3, 4], "a": [2, 2, 5, 5]}), "y", "base")
    (a,) = fitted.effects.to_dicts()
    assert fitted.df == 3 and a["diff"] == pytest.approx(1.0)
    assert a["se"] == pytest.approx(math.sqrt(1 / 6))
    # t = 1 / sqrt(1/6) = 2.449 on 3 df: between the tables' 2.353 (p = 0.10) and 3.182 (0.05)
    assert 0.05 < a["p"] < 0.10 and a["p"] == pytest.approx(0.0917, abs=5e-4)
    assert a["p"] == pytest.approx(paired_p([1, 0, 2, 1]))


def test_a_missing_cell_is_fitted_not_dropped():
    # base has seeds 0..2, a only 0 and 1: a's effect is estimated from its two seeds against
    # the seed effects that all three baseline runs inform; with an exact additive table the
    # fit is exact and the residual is 0
    table = runs({"base": [1, 3, 6], "a": [3, 5]})
    fitted = fit(table, "y", "base")
    (a,) = fitted.effects.to_dicts()
    assert a["diff"] == pytest.approx(2.0) and a["pairs"] == 2
    assert fitted.df == 1 and fitted.sigma2 == pytest.approx(0.0, abs=1e-20)


def test_an_unknown_baseline_is_an_error():
    with pytest.raises(ValueError, match="baseline configuration 'c'"):
        fit(runs({"base": [1, 2]}), "y", "c")


def test_item_variance_by_the_run_plus_item_decomposition():
    # runs r0: 1 0 1, r1: 0 0 1; row means 2/3, 1/3; item means 1/2, 0, 1; grand 1/2
    # residuals 1/3 -1/6 -1/6 / -1/3 1/6 1/6: SS = 1/3 over (2-1)(3-1) = 2 df
    items = pl.DataFrame({"run": ["r0"] * 3 + ["r1"] * 3, "item": ["i0", "i1", "i2"] * 2,
                          "y": [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]})  # fmt: skip
    assert item_variance(items, "y") == (pytest.approx(1 / 6), 3)
    with pytest.raises(ValueError, match="same items"):
        item_variance(items.filter(~((pl.col("run") == "r1") & (pl.col("item") == "i2"))), "y")


def test_items_needed_for_item_noise_a_fifth_of_seed_noise_by_hand():
    # sigma2 = 0.002 per run, of which items give 0.2 / 200 = 0.001: seeds 0.001; a fifth of
    # it (0.0002) takes 0.2 / 0.0002 = 1000 items
    fitted = PooledFit(pl.DataFrame(), 0.002, 4, 3, 3, sigma2_item=0.2, n_items=200)
    assert fitted.sigma2_seed == pytest.approx(0.001)
    assert items_needed(fitted) == 1000 and items_needed(fitted, share=1.0) == 200
    assert items_needed(PooledFit(pl.DataFrame(), 0.002, 4, 3, 3)) is None  # no item part
    assert items_needed(PooledFit(pl.DataFrame(), 0.0005, 4, 3, 3, 0.2, 200)) is None  # no seeds


def test_the_variance_section_states_the_components_items_and_power():
    from workbench.report.variance import variance_section

    fitted = PooledFit(pl.DataFrame(), 0.002, 4, 3, 3, sigma2_item=0.2, n_items=200)
    text = "\n".join(variance_section(fitted, "eval/vqa_rank/4shot"))
    assert "residual variance per run of 0.002 on 4 degrees of freedom" in text
    assert "sigma2_item / n_items = 0.001" in text and "on fixed items) 0.001." in text
    assert "from 1000 items on" in text and "this study used 200" in text
    # 0.05 at sigma2 0.002 over 3 configurations: the power table's row, from seeds_needed
    assert f"| 0.0500 | {seeds_needed(0.05, 0.002, 3)} |" in text


def test_seeds_needed_match_the_paired_t_test_tables():
    # two configurations, sigma2 = 1 per run: the difference has variance 2, so an effect of
    # 0.5 * sqrt(2) is d_z = 0.5, for which a paired t-test needs 34 pairs at 80% power
    # (two-sided 5%; Cohen 1988, G*Power); d_z = 0.8 needs 15
    assert seeds_needed(0.5 * math.sqrt(2), 1.0) == 34
    assert seeds_needed(0.8 * math.sqrt(2), 1.0) == 15
    assert power(0.5 * math.sqrt(2), 1.0, 34) >= 0.8 > power(0.5 * math.sqrt(2), 1.0, 33)
    fitted = fit(runs({"base": [1, 2, 3, 4], "a": [2, 2, 5, 5]}), "y", "base")
    table = power_table(fitted, effects=(0.5, 5.0)).to_dicts()
    assert table[0]["seeds_80pct_power"] > table[1]["seeds_80pct_power"] >= 2


def test_study_effects_report_pooled_and_per_pair_intervals():
    table = runs({"base": [1, 2, 3], "a": [2, 4, 3], "b": [0, 1, 5]}).rename({"config": "axis.m"})
    effects = study_effects(table, "y", {"m": "base"})
    a = effects.filter(pl.col("value") == "a").to_dicts()[0]
    se = math.sqrt(11 / 9)  # the pooled fit of test_three_configurations_by_three_seeds
    assert a["pooled_diff"] == pytest.approx(1.0) and a["pooled_df"] == 4
    assert a["pooled_ci95_low"] == pytest.approx(1 - T_975_DF4 * se)
    # per pair: diffs 1, 2, 0 -> mean 1, sd 1, t(0.975, 2) = 4.3027 -> 1 +- 4.3027 / sqrt(3)
    assert a["diff"] == pytest.approx(1.0)
    assert a["diff_ci95_high"] == pytest.approx(1 + 4.302652729911275 / math.sqrt(3))
    base = effects.filter(pl.col("baseline")).to_dicts()[0]
    assert base["pooled_diff"] is None


def test_values_at_a_matched_budget_by_hand():
    from workbench.report.matched import at_budget, matched

    curve = [(0.0, 1.0), (10.0, 0.5), (20.0, 0.3)]
    assert at_budget(curve, 10.0) == 0.5
    assert at_budget(curve, 15.0) == pytest.approx(0.4)  # halfway from 0.5 to 0.3
    assert math.isnan(at_budget(curve, 25.0))
    # run a spends 10 FLOPs a step, run b 5: at b's final budget (10) a is at its step 1
    flops = {"a": [(1, 10.0), (2, 20.0)], "b": [(1, 5.0), (2, 10.0)]}
    loss = {"a": [(0, 1.0), (1, 0.6), (2, 0.4)], "b": [(0, 1.0), (2, 0.7)]}

    def history(run, key):
        return flops[run] if key == "compute/flops_seen" else loss[run]

    frame = pl.DataFrame({"run_id": ["a", "b"], "val/loss": [0.4, 0.7]})
    values, budget = matched(frame, "val/loss", "flops", history)
    assert budget == 10.0 and values["val/loss"].to_list() == pytest.approx([0.6, 0.7])
    loss["a"] = [(2, 0.4)]  # evaluated only at its end (20 FLOPs): nothing at 10
    values, _ = matched(frame, "val/loss", "flops", history)
    assert values["val/loss"].to_list() == [None, pytest.approx(0.7)]


def test_the_shots_series_by_hand(tmp_path):
    from workbench.report.plots import plot_shots, shot_series

    runs = pl.DataFrame({
        "axis.special_embeddings": ["trainable", "trainable", "frozen", "frozen"],
        "seed": [0, 1, 0, 1],
        "eval/vqa_rank/0shot": [0.3, 0.5, 0.2, 0.2],
        "eval/vqa_rank/4shot": [0.6, 0.8, 0.1, 0.3],
        "eval/vqa/4shot": [0.0, 0.0, 0.0, 0.0],  # another task: not in the series
    })  # fmt: skip
    series = shot_series(runs, "vqa_rank", ["axis.special_embeddings"])
    rows = {(r["config"], r["shots"]): r for r in series.iter_rows(named=True)}
    assert set(rows) == {(f"special_embeddings={v}", k) for v in ("trainable", "frozen")
                         for k in (0, 4)}  # fmt: skip
    four = rows[("special_embeddings=trainable", 4)]
    # 0.6 and 0.8: mean 0.7, sd 0.1414, t(0.975, 1) = 12.706 -> 0.7 +- 12.706 * 0.1
    assert four["mean"] == pytest.approx(0.7) and four["seeds"] == 2
    assert four["ci95_high"] == pytest.approx(0.7 + 12.706204736174707 * 0.1)
    assert plot_shots(runs, "vqa_rank", ["axis.special_embeddings"], tmp_path / "s.png").exists()


def test_a_contrast_between_two_variants_by_hand():
    from workbench.report.pooled import contrast

    fitted = fit(runs({"base": [1, 2, 3], "a": [2, 4, 3], "b": [0, 1, 5]}), "y", "base")
    # a - b: 1 - 0; variance 2 sigma2/S + 2 sigma2/S - 2 cov, cov(a, b) = sigma2/S (the shared
    # baseline), so 2 sigma2 / S = 11/9, as for one comparison with the baseline
    estimate, low, high = contrast(fitted, {"a": 1.0, "b": -1.0})
    assert estimate == pytest.approx(1.0) and estimate - low == pytest.approx(high - estimate)
    assert high - estimate == pytest.approx(T_975_DF4 * math.sqrt(11 / 9))
    assert contrast(fitted, {"a": 1.0})[1] == pytest.approx(1 - T_975_DF4 * math.sqrt(11 / 9))
    with pytest.raises(ValueError, match="no estimate"):
        contrast(fitted, {"c": 1.0})


def test_an_interaction_of_two_axes_by_hand():
    from workbench.report.variance import interaction_section, study_fit

    cells = {("1", "tiny"): [1, 2], ("2", "tiny"): [2, 3], ("1", "small"): [3, 4],
             ("2", "small"): [6, 7.5]}  # fmt: skip
    rows = [{"axis.xattn_every": x, "axis.scale": s, "seed": seed, "y": v}
            for (x, s), values in cells.items() for seed, v in enumerate(values)]  # fmt: skip
    frame = pl.DataFrame(rows)
    baselines = {"xattn_every": "1", "scale": "tiny"}
    fitted = study_fit(frame, "y", baselines)
    text = "\n".join(interaction_section(frame, "y", baselines, fitted))
    # cell means 1.5, 2.5, 3.5, 6.75: (6.75 - 3.5) - (2.5 - 1.5) = 2.25
    assert "scale x xattn_every" in text and "small x 2" in text and "2.2500" in text
