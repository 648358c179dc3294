"""``wb compare``: finished runs side by side, each variant against its baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.app import HomeOption, TrackingOption, app, emit, friendly


@app.command("compare")
@friendly
def compare_runs(
    experiment: Annotated[str, typer.Option(help="The MLflow experiment.")] = "shapes_tiny",
    study: Annotated[str | None, typer.Option(help="Only the runs of this study.")] = None,
    group_by: Annotated[
        list[str] | None,
        typer.Option(help="Group by these axes (the others at baseline) instead of by config."),
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option(help="Metrics (default final/loss/laion, final/loss/mmc4).")
    ] = None,
    format: Annotated[str, typer.Option(help="table, markdown, csv or parquet.")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write here (parquet needs it).")] = None,
    tracking_uri: TrackingOption = None,
    home: HomeOption = None,
) -> None:
    """Each variant against the baseline of its base configuration (the experiment and its
    --set overrides): mean and 95% CI over seeds, and the difference to the baseline paired by
    seed."""
    from workbench.report import compare_experiment, render_comparison
    from workbench.track import default_uri, interrupted_runs
    from workbench.train.result import home_dir

    uri = tracking_uri or default_uri(home_dir(home))
    table = compare_experiment(uri, experiment, metric, group_by, study)
    emit(table, format, output, render=render_comparison)
    gone = interrupted_runs(uri, experiment)
    if gone:
        names = ", ".join(r["run_name"] for r in gone[:5]) + (" ..." if len(gone) > 5 else "")
        typer.echo(f"not compared: {len(gone)} interrupted runs (RUNNING, their process is "
                   f"gone): {names}; `wb run ... --resume` continues them", err=True)  # fmt: skip
