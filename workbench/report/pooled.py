"""Effects from a model of the whole study: configuration x seed, with items as a crossed source.

Every configuration of a study runs the same seeds (the same data order) and is evaluated on the
same items. The run-level value (a run's mean over the items) is modelled as additive:

    y[c, s] = mu + config[c] + seed[s] + e[c, s],   e ~ N(0, sigma2)

fitted by least squares over every run of the study (missing cells are allowed), so each
comparison ``config[v] - config[baseline]`` gets the pooled residual variance with the degrees
of freedom of the whole study, N - C - S + 1 for a full grid, instead of S - 1 from its own pairs.

Where per-item results exist, ``sigma2`` splits into an item part and a seed part: the item x run
residual ``sigma2_item`` (a run's score on an item beyond the run's mean and the item's mean
over runs) reaches a run mean divided by the number of items, and the rest is seed noise:
``sigma2_seed = max(0, sigma2 - sigma2_item / n_items)``. That tells a researcher whether more
seeds or more items would narrow the interval. The power table gives the seeds needed to detect
an effect of a given size at 80% power, two-sided 5%, by the noncentral t distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl
from scipy import stats


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over the comparisons)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    m = len(p_values)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class PooledFit:
    """The fitted study: one row per non-baseline configuration in :attr:`effects`."""

    effects: pl.DataFrame  # config, diff, se, ci95_low, ci95_high, df, p, p_holm, pairs
    sigma2: float  # residual variance of a run's value (NaN without residual df)
    df: int  # residual degrees of freedom
    configs: int
    seeds: int
    sigma2_item: float = math.nan  # item x run residual variance (per item)
    n_items: int = 0
    # each non-baseline configuration's estimated effect and their covariance (for contrasts)
    estimates: dict[str, float] = field(default_factory=dict)
    covariance: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def sigma2_seed(self) -> float:
        """The part of :attr:`sigma2` that more items would not remove."""
        if math.isnan(self.sigma2_item) or not self.n_items:
            return math.nan
        return max(0.0, self.sigma2 - self.sigma2_item / self.n_items)


def fit(runs: pl.DataFrame, value: str, baseline: str, confidence: float = 0.95) -> PooledFit:
    """Least-squares configuration + seed fit of ``runs`` (columns ``config``, ``seed`` and
    ``value``; one row per run; a configuration's repeated runs of one seed are averaged).

    Raises:
        ValueError: ``baseline`` is not among the configurations.
    """
    cells = (
        runs.drop_nulls(value)
        .group_by("config", "seed")
        .agg(pl.col(value).mean())
        .sort("config", "seed")
    )
    configs = sorted(set(cells["config"].to_list()))
    if baseline not in configs:
        raise ValueError(f"the baseline configuration {baseline!r} has no run with {value}")
    others = [c for c in configs if c != baseline]
    seeds = sorted(set(cells["seed"].to_list()))
    y = cells[value].to_numpy().astype(float)
    design = np.zeros((len(y), 1 + len(others) + len(seeds) - 1))
    design[:, 0] = 1.0
    for row, (config, seed) in enumerate(zip(cells["config"], cells["seed"], strict=True)):
        if config != baseline:
            design[row, 1 + others.index(config)] = 1.0
        if seed != seeds[0]:
            design[row, len(others) + seeds.index(seed)] = 1.0
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    rank = int(np.linalg.matrix_rank(design))
    df = len(y) - rank
    residual = y - design @ coef
    sigma2 = float(residual @ residual / df) if df > 0 else math.nan
    covariance = np.linalg.pinv(design.T @ design) * sigma2
    t = float(stats.t.ppf(0.5 + confidence / 2, df)) if df > 0 else math.nan
    rows = []
    base_seeds = set(cells.filter(pl.col("config") == baseline)["seed"].to_list())
    for k, config in enumerate(others, start=1):
        diff, se = float(coef[k]), math.sqrt(covariance[k, k]) if df > 0 else math.nan
        p = float(2 * stats.t.sf(abs(diff / se), df)) if df > 0 and se > 0 else math.nan
        pairs = len(base_seeds & set(cells.filter(pl.col("config") == config)["seed"].to_list()))
        rows.append({"config": config, "diff": diff, "se": se, "ci95_low": diff - t * se,
                     "ci95_high": diff + t * se, "df": df, "p": p, "pairs": pairs})  # fmt: skip
    effects = pl.DataFrame(rows, schema_overrides={"df": pl.Int64}) if rows else pl.DataFrame()
    if rows:
        ps = [r["p"] for r in rows]
        tested = [i for i, p in enumerate(ps) if not math.isnan(p)]
        adjusted = dict(zip(tested, holm([ps[i] for i in tested]), strict=True))
        effects = effects.with_columns(
            pl.Series("p_holm", [adjusted.get(i, math.nan) for i in range(len(rows))])
        )
    estimates = {c: float(coef[k]) for k, c in enumerate(others, start=1)}
    pairs_cov = {(a, b): float(covariance[i, j]) for i, a in enumerate(others, start=1)
                 for j, b in enumerate(others, start=1)}  # fmt: skip
    return PooledFit(effects, sigma2, df, len(configs), len(seeds), estimates=estimates,
                     covariance=pairs_cov)  # fmt: skip


def item_variance(items: pl.DataFrame, value: str) -> tuple[float, int]:
    """(sigma2_item, n_items): the item x run residual variance of per-item results (columns
    ``run``, ``item``, ``value``; every run scored on the same items), by the two-way
    run + item decomposition: SS_residual / ((R - 1)(I - 1))."""
    table = items.pivot(on="item", index="run", values=value, aggregate_function="mean")
    matrix = table.drop("run").to_numpy().astype(float)
    if np.isnan(matrix).any():
        raise ValueError("every run must be scored on the same items (some run lacks an item)")
    r, i = matrix.shape
    if r < 2 or i < 2:
        return math.nan, i
    residual = (
        matrix - matrix.mean(axis=1, keepdims=True) - matrix.mean(axis=0, keepdims=True)
        + matrix.mean()
    )  # fmt: skip
    return float((residual**2).sum() / ((r - 1) * (i - 1))), i


def with_items(fitted: PooledFit, items: pl.DataFrame, value: str) -> PooledFit:
    sigma2_item, n_items = item_variance(items, value)
    return replace(fitted, sigma2_item=sigma2_item, n_items=n_items)


def contrast(
    fitted: PooledFit, weights: dict[str, float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """(estimate, low, high) of sum_c w_c * effect_c, the baseline's effect being 0 (e.g. an
    interaction: +1 for (a, b), -1 for (a, b0) and (a0, b), the baseline (a0, b0) dropping out),
    with the pooled interval on the study's degrees of freedom.

    Raises:
        ValueError: a weighted configuration has no estimate.
    """
    known = {c: w for c, w in weights.items() if w}
    missing = [c for c in known if c not in fitted.estimates]
    if missing:
        raise ValueError(f"no estimate for {missing}; configurations: {sorted(fitted.estimates)}")
    estimate = sum(w * fitted.estimates[c] for c, w in known.items())
    variance = sum(wa * wb * fitted.covariance[(a, b)]
                   for a, wa in known.items() for b, wb in known.items())  # fmt: skip
    if fitted.df < 1:
        return estimate, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, fitted.df)) * math.sqrt(max(variance, 0.0))
    return estimate, estimate - half, estimate + half


def power(effect: float, sigma2: float, seeds: int, configs: int = 2, alpha: float = 0.05) -> float:
    """Power of the pooled comparison of two configurations that differ by ``effect``, with
    ``seeds`` seeds for each of ``configs`` configurations (residual df (C-1)(S-1))."""
    df = (configs - 1) * (seeds - 1)
    if df < 1 or not sigma2 > 0:
        return math.nan
    noncentrality = abs(effect) / math.sqrt(2 * sigma2 / seeds)
    critical = float(stats.t.ppf(1 - alpha / 2, df))
    upper = stats.nct.sf(critical, df, noncentrality)
    return float(upper + stats.nct.cdf(-critical, df, noncentrality))


def seeds_needed(
    effect: float, sigma2: float, configs: int = 2, target: float = 0.8, limit: int = 10_000
) -> int | None:
    """The fewest seeds at which :func:`power` reaches ``target``; None beyond ``limit``."""
    if not sigma2 > 0:
        return 2
    for seeds in range(2, limit + 1):
        if power(effect, sigma2, seeds, configs) >= target:
            return seeds
    return None


def power_table(fitted: PooledFit, effects: Sequence[float] = (0.01, 0.02, 0.05)) -> pl.DataFrame:
    """Seeds needed per effect size at this study's residual variance and configuration count."""
    needed = [seeds_needed(e, fitted.sigma2, max(fitted.configs, 2)) for e in effects]
    return pl.DataFrame({"effect": list(effects), "seeds_80pct_power": needed},
                        schema_overrides={"seeds_80pct_power": pl.Int64})  # fmt: skip


def items_needed(fitted: PooledFit, share: float = 0.2) -> int | None:
    """The fewest evaluation items at which the item part of a run's variance
    (``sigma2_item / n``) is at most ``share`` of its seed part; None without both parts."""
    seed = fitted.sigma2_seed
    if math.isnan(seed) or math.isnan(fitted.sigma2_item) or not seed > 0:
        return None
    return math.ceil(fitted.sigma2_item / (share * seed))
