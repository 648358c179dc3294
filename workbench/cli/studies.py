"""``wb search`` and ``wb report``: studies of the open questions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.app import HomeOption, TrackingOption, app, friendly, ints


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
    until_decisive: Annotated[
        bool, typer.Option(help="Then add seeds where a comparison's interval straddles ±D.")
    ] = False,
    min_effect: Annotated[
        float, typer.Option(min=0.0, help="D: the smallest difference that matters.")
    ] = 0.02,
    max_seeds: Annotated[int, typer.Option(min=2, help="Seeds per configuration at most.")] = 8,
    tracking_uri: TrackingOption = None,
    home: HomeOption = None,
) -> None:
    """Runs (or continues) an Optuna study; every trial's runs are MLflow child runs.

    The study keeps its name (wb report STUDY reports it); the seeds, budget and sampler it
    runs with are recorded on it. A continued study must keep the seeds its trials ran with.
    With --until-decisive, each comparison whose pooled 95% interval is neither beyond ±D nor
    inside it gets more seeds (for it and the baseline), up to --max-seeds.
    """
    from workbench.search import load_studies, print_trials, run_study, study_variant, trials_table
    from workbench.train.result import home_dir

    chosen = study_variant(load_studies().get(study), trials=trials, sampler=sampler,
                           seeds=tuple(ints(seeds)) if seeds is not None else None)  # fmt: skip
    done = run_study(chosen, storage=storage, workers=workers, home=home_dir(home),
                     tracking_uri=tracking_uri, prepare=True)  # fmt: skip
    print_trials(trials_table(done))
    if until_decisive:
        from workbench.search.decisive import until_decisive as add_seeds
        from workbench.track import default_uri

        parent = str(done.user_attrs["mlflow_parent_run_id"])
        uri = tracking_uri or default_uri(home_dir(home))
        add_seeds(chosen, home_dir(home), uri, parent, min_effect=min_effect,
                  max_seeds=max_seeds, say=typer.echo)  # fmt: skip
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
