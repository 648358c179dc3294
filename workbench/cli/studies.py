"""``wb search``, ``wb report`` and ``wb compare``: studies and the comparison of runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.app import HomeOption, TrackingOption, app, emit, friendly, ints


@app.command("compare")
@friendly
def compare_runs(
    experiment: Annotated[str, typer.Option(help="The MLflow experiment.")] = "shapes_tiny",
    group_by: Annotated[
        list[str] | None, typer.Option(help="Group by these axes instead of by config.")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option(help="Metrics (default final/loss/laion, final/loss/mmc4).")
    ] = None,
    format: Annotated[str, typer.Option(help="table, markdown, csv or parquet.")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write here (parquet needs it).")] = None,
    tracking_uri: TrackingOption = None,
    home: HomeOption = None,
) -> None:
    """Finished runs grouped by config: mean, std, 95% CI over seeds, paired diff to baseline."""
    from workbench.report import compare_experiment
    from workbench.track import default_uri
    from workbench.train.result import home_dir

    uri = tracking_uri or default_uri(home_dir(home))
    emit(compare_experiment(uri, experiment, metric, group_by), format, output)


@app.command()
@friendly
def search(
    study: Annotated[str, typer.Argument(help="A study of ablations/studies.py.")],
    trials: Annotated[int | None, typer.Option(min=1, help="Trial budget (default: grid).")] = None,
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage: journal path or RDB URL.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Trial processes on this machine.")] = 1,
    sampler: Annotated[str | None, typer.Option(help="grid or tpe (default: the study's).")] = None,
    seeds: Annotated[
        str | None, typer.Option(help="Comma-separated seeds per configuration.")
    ] = None,
    tracking_uri: TrackingOption = None,
    home: HomeOption = None,
) -> None:
    """Runs (or continues) an Optuna study; every trial's runs are MLflow child runs."""
    import polars as pl

    from workbench.search import load_studies, run_study, study_variant, trials_table
    from workbench.train.result import home_dir

    chosen = study_variant(load_studies().get(study), trials=trials, sampler=sampler,
                           seeds=tuple(ints(seeds)) if seeds is not None else None)  # fmt: skip
    done = run_study(chosen, storage=storage, workers=workers, home=home_dir(home),
                     tracking_uri=tracking_uri, prepare=True)  # fmt: skip
    typer.echo(str(pl.DataFrame(trials_table(done))))
    typer.echo(f"report: wb report {study} --home {home_dir(home)}")


@app.command()
@friendly
def report(
    study: Annotated[str, typer.Argument(help="A study that has run.")],
    out: Annotated[
        Path | None, typer.Option(help="Directory (default <home>/reports/STUDY).")
    ] = None,
    storage: Annotated[str | None, typer.Option(help="The study's Optuna storage.")] = None,
    tracking_uri: TrackingOption = None,
    home: HomeOption = None,
) -> None:
    """Markdown + HTML report of a study (effects with CIs, curves, cost), logged to MLflow."""
    from workbench.search import load_studies, report_study
    from workbench.train.result import home_dir

    paths = report_study(load_studies().get(study), home_dir(home), out=out, storage=storage,
                         tracking_uri=tracking_uri)  # fmt: skip
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")
