"""Tables of finished runs: grouped by configuration, with the mean, standard deviation and 95%
confidence interval over seeds, and the paired difference to the baseline.

The baseline is the configuration whose runs carry no ``axis.*`` tag (the experiment as
written); a variant's difference is taken seed by seed against it (paired), so seed-to-seed
noise shared by both cancels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
from scipy import stats

DEFAULT_METRICS = ("final/loss/laion", "final/loss/mmc4")


def runs_frame(uri: str, experiment: str) -> pl.DataFrame:
    """One row per finished run: ids, config_id, seed, ``axis.*`` tags and ``final/*`` metrics."""
    from workbench.track import search_runs

    rows: list[dict[str, Any]] = []
    for run in search_runs(uri, experiment):
        tags, metrics = run["tags"], run["metrics"]
        if "config_id" not in tags:
            continue  # not a workbench training run (e.g. a study's parent)
        row: dict[str, Any] = {
            "run_id": run["run_id"],
            "config_id": tags["config_id"],
            "seed": int(tags.get("seed", 0)),
        }
        row.update({k: v for k, v in tags.items() if k.startswith("axis.")})
        if "study" in tags:
            row["study"], row["trial"] = tags["study"], int(tags.get("trial", -1))
        # final summaries, and the last value of each evaluation
        row.update({k: float(v) for k, v in metrics.items() if k.startswith(("final/", "eval/"))})
        rows.append(row)
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def axis_columns(frame: pl.DataFrame) -> list[str]:
    return sorted(c for c in frame.columns if c.startswith("axis."))


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, std, low, high): Student-t interval of the mean; NaN bounds for one value."""
    n = len(values)
    if n == 0:
        return (math.nan,) * 4
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan, math.nan, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def compare(
    frame: pl.DataFrame,
    metrics: Sequence[str] = DEFAULT_METRICS,
    group_by: Sequence[str] | None = None,
) -> pl.DataFrame:
    """One row per configuration (or per value of the ``group_by`` axes) and metric.

    Columns: the axes, ``metric``, ``n`` (seeds), ``mean``, ``std``, ``ci95_low``,
    ``ci95_high``, and against the baseline ``diff``, ``diff_ci95_low``, ``diff_ci95_high``,
    ``pairs`` (seeds present in both).
    """
    if frame.is_empty():
        return pl.DataFrame()
    axes = axis_columns(frame)
    if group_by:
        wanted = [a if a.startswith("axis.") else f"axis.{a}" for a in group_by]
        unknown = [a for a in wanted if a not in axes]
        if unknown:
            raise ValueError(f"no runs carry {unknown}; axes present: {axes or 'none'}")
        keys = wanted
    else:
        keys = ["config_id", *axes]
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        known = sorted(c for c in frame.columns if c.startswith("final/"))
        raise ValueError(f"no run has {missing}; metrics present: {known}")
    is_baseline = pl.all_horizontal([pl.col(a).is_null() for a in axes]) if axes else pl.lit(True)
    baseline = frame.filter(is_baseline)
    rows: list[dict[str, Any]] = []
    for group_key, group in frame.group_by(keys, maintain_order=True):
        label = dict(zip(keys, group_key, strict=True))
        for metric in metrics:
            values = group[metric].drop_nulls().to_list()
            mean, std, low, high = mean_ci(values)
            paired = group.select("seed", metric).join(
                baseline.select("seed", pl.col(metric).alias("base")), on="seed"
            )
            diffs = (paired[metric] - paired["base"]).drop_nulls().to_list()
            diff, _, diff_low, diff_high = mean_ci(diffs)
            rows.append(
                {
                    "variant": _variant(group, axes),
                    **label,
                    "metric": metric,
                    "n": len(values),
                    "mean": mean,
                    "std": std,
                    "ci95_low": low,
                    "ci95_high": high,
                    "diff": diff,
                    "diff_ci95_low": diff_low,
                    "diff_ci95_high": diff_high,
                    "pairs": len(diffs),
                }
            )
    order = [k for k in keys if k != "config_id"] + [k for k in keys if k == "config_id"]
    return pl.DataFrame(rows).sort([*order, "metric"], nulls_last=False)


def _variant(group: pl.DataFrame, axes: list[str]) -> str:
    """``baseline``, or the group's axis values (``xattn_every=2``; ``*`` where they differ)."""
    parts = []
    for axis in axes:
        values = group[axis].unique().to_list()
        if values == [None]:
            continue
        shown = str(values[0]) if len(values) == 1 else "*"
        parts.append(f"{axis.removeprefix('axis.')}={shown}")
    return ", ".join(parts) or "baseline"


def to_markdown(table: pl.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured markdown table (empty cells for nulls and NaN)."""
    if table.is_empty():
        return "(no runs)"

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.iter_rows()]
    return "\n".join(lines)


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


def study_effects(frame: pl.DataFrame, metric: str, study: str) -> pl.DataFrame:
    """Per axis value: mean and CI over seeds, and the paired difference to the baseline with
    a paired t-test, Holm-adjusted over every comparison of the study."""
    runs = frame.filter(pl.col("study") == study) if "study" in frame.columns else frame
    axes = axis_columns(runs)
    if runs.is_empty() or metric not in runs.columns:
        return pl.DataFrame()
    baseline_values = {
        a: runs[a].drop_nulls().mode().to_list()[0] for a in axes if runs[a].drop_nulls().len()
    }
    is_base = pl.all_horizontal([pl.col(a) == baseline_values[a] for a in baseline_values])
    base = runs.filter(is_base).select("seed", pl.col(metric).alias("base"))
    rows: list[dict[str, Any]] = []
    for axis in axes:
        others = [pl.col(a) == baseline_values[a] for a in axes if a != axis]
        varied = runs.filter(pl.all_horizontal(others)) if others else runs
        for value in sorted(varied[axis].drop_nulls().unique().to_list()):
            group = varied.filter(pl.col(axis) == value)
            mean, std, low, high = mean_ci(group[metric].drop_nulls().to_list())
            paired = group.select("seed", metric).join(base, on="seed")
            diffs = (paired[metric] - paired["base"]).to_list()
            diff, _, diff_low, diff_high = mean_ci(diffs)
            p = math.nan
            if len(diffs) > 1 and any(d != 0 for d in diffs):
                p = float(stats.ttest_1samp(diffs, 0.0).pvalue)
            rows.append({"axis": axis.removeprefix("axis."), "value": value,
                         "baseline": value == baseline_values[axis], "n": group.height,
                         "mean": mean, "std": std, "ci95_low": low, "ci95_high": high,
                         "diff": diff, "diff_ci95_low": diff_low, "diff_ci95_high": diff_high,
                         "p": p})  # fmt: skip
    table = pl.DataFrame(rows)
    tested = [i for i, r in enumerate(rows) if not math.isnan(r["p"])]
    adjusted = holm([rows[i]["p"] for i in tested])
    p_holm = [math.nan] * len(rows)
    for i, value in zip(tested, adjusted, strict=True):
        p_holm[i] = value
    return table.with_columns(pl.Series("p_holm", p_holm))


def write_study_report(
    uri: str,
    experiment: str,
    study: str,
    metric: str,
    out_dir: str | Path,
    trials: pl.DataFrame | None = None,
    importance: dict[str, float] | None = None,
    importance_method: str = "",
    pareto: pl.DataFrame | None = None,
) -> dict[str, Path]:
    """Markdown and self-contained HTML reports (with PNG plots) of a study's finished runs.

    Returns the paths written: ``report.md``, ``report.html`` and the plots.
    """
    import base64

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from workbench.track import metric_history

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = runs_frame(uri, experiment)
    if frame.is_empty() or "study" not in frame.columns:
        raise ValueError(f"no finished runs of study {study!r} in experiment {experiment!r}")
    runs = frame.filter(pl.col("study") == study)
    effects = study_effects(runs, metric, study)
    if effects.is_empty():
        raise ValueError(f"the runs of study {study!r} have no metric {metric!r}")
    axes = axis_columns(runs)
    plots: dict[str, Path] = {}

    # effect per axis value, with 95% intervals over seeds
    fig, axs = plt.subplots(
        1, max(len(axes), 1), figsize=(4 * max(len(axes), 1), 3.2), squeeze=False
    )
    for ax, axis in zip(axs[0], axes, strict=False):
        part = effects.filter(pl.col("axis") == axis.removeprefix("axis."))
        xs = list(range(part.height))
        means = part["mean"].to_list()
        lows, highs = part["ci95_low"].to_list(), part["ci95_high"].to_list()
        err = [[m - lo if lo == lo else 0 for m, lo in zip(means, lows, strict=True)],
               [hi - m if hi == hi else 0 for m, hi in zip(means, highs, strict=True)]]  # fmt: skip
        ax.errorbar(xs, means, yerr=err, fmt="o", capsize=4)
        ax.set_xticks(xs, [str(v) for v in part["value"].to_list()])
        ax.set_title(axis.removeprefix("axis."))
        ax.set_ylabel(metric)
    fig.tight_layout()
    plots["effects"] = out / "effects.png"
    fig.savefig(plots["effects"], dpi=100)
    plt.close(fig)

    # learning curves: the mean over seeds of each configuration, with its range
    curve_metric = "loss/mmc4"
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, group in runs.group_by(axes, maintain_order=True):
        label = ", ".join(f"{a.removeprefix('axis.')}={v}" for a, v in zip(axes, key, strict=True))
        curves = [metric_history(uri, run_id, curve_metric) for run_id in group["run_id"]]
        curves = [c for c in curves if c]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        steps = [s for s, _ in curves[0][:length]]
        values = [[v for _, v in c[:length]] for c in curves]
        mean = [sum(col) / len(col) for col in zip(*values, strict=True)]
        ax.plot(steps, mean, label=label)
        ax.fill_between(steps, [min(col) for col in zip(*values, strict=True)],
                        [max(col) for col in zip(*values, strict=True)], alpha=0.2)  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel(curve_metric)
    ax.legend(fontsize=7)
    fig.tight_layout()
    plots["curves"] = out / "learning_curves.png"
    fig.savefig(plots["curves"], dpi=100)
    plt.close(fig)

    cost = (
        runs.group_by(axes, maintain_order=True).agg(
            pl.len().alias("runs"), pl.col("final/wall_s").mean().alias("seconds_per_run")
        )
        if "final/wall_s" in runs.columns
        else pl.DataFrame()
    )
    rerun = (
        effects.filter(~pl.col("baseline"))
        .with_columns((pl.col("diff_ci95_high") - pl.col("diff_ci95_low")).alias("diff_ci_width"))
        .sort("diff_ci_width", descending=True, nulls_last=False)
    )

    sections = [
        f"# Study `{study}`\n",
        f"Objective: `{metric}` over {runs.height} finished runs "
        f"({runs['seed'].n_unique()} seeds per configuration, paired by seed).\n",
        "## Effects per axis\n",
        "Mean and Student-t 95% interval over seeds; `diff` is the paired difference to the "
        "baseline value of the axis (others at baseline), `p_holm` its paired t-test p-value "
        "with Holm's correction over all comparisons.\n",
        to_markdown(effects),
        "\n![effects](effects.png)\n",
        "## Learning curves\n\nMean over seeds of `loss/mmc4` by step, band = min to max.\n",
        "![learning curves](learning_curves.png)\n",
        "## Cost per configuration\n",
        to_markdown(cost),
        "\n## Reruns that would narrow the uncertainty most\n",
        "Comparisons with the widest interval on their difference first (more seeds there halve "
        "the width with four times the runs):\n",
        to_markdown(rerun.select("axis", "value", "n", "diff", "diff_ci_width").head(5)),
    ]
    if importance:
        sections += [
            f"\n## Parameter importance ({importance_method})\n",
            "A screening signal from the completed trials, not an effect estimate:\n",
            "\n".join(f"- {k}: {v:.3f}" for k, v in importance.items()),
        ]
    if pareto is not None and not pareto.is_empty():
        sections += ["\n## Pareto front (objective vs measured seconds)\n", to_markdown(pareto)]
    if trials is not None and not trials.is_empty():
        sections += ["\n## Trials\n", to_markdown(trials)]
    markdown = "\n".join(sections) + "\n"
    paths = {"markdown": out / "report.md", "html": out / "report.html", **plots}
    paths["markdown"].write_text(markdown)
    html = _html(
        markdown, {p.name: base64.b64encode(p.read_bytes()).decode() for p in plots.values()}
    )
    paths["html"].write_text(html)
    return paths


def _html(markdown: str, images: dict[str, str]) -> str:
    """A self-contained HTML page of the report's markdown (tables, headings, images inline)."""
    import html as html_lib

    body: list[str] = []
    table: list[str] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            rows = [r.strip("|").split("|") for r in table if not r.startswith("|---")]
            cells = "".join(
                "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{html_lib.escape(c.strip())}"
                                 f"</{'th' if i == 0 else 'td'}>" for c in row) + "</tr>"
                for i, row in enumerate(rows)
            )  # fmt: skip
            body.append(f"<table>{cells}</table>")
            table = []
        image = re.match(r"!\[(.*)\]\((.*)\)", line)
        if image and image.group(2) in images:
            body.append(
                f'<img alt="{image.group(1)}" src="data:image/png;base64,{images[image.group(2)]}">'
            )
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html_lib.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("- "):
            body.append(f"<li>{html_lib.escape(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{html_lib.escape(line)}</p>")
    style = "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
    head = f"<head><meta charset='utf-8'><style>{style}</style></head>"
    head = f"<head><meta charset='utf-8'><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(body)}</body></html>"
