"""``wb list``, ``show``, ``run``, ``quickstart``, ``demo`` and ``ui``."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import Annotated

import typer

from workbench.cli.app import AblateOption, HomeOption, SetOption, TrackingOption, app, friendly
from workbench.cli.app import ints as parse_ints


@app.command("list")
@friendly
def list_components(
    kind: Annotated[str | None, typer.Argument(help="Only this kind, e.g. 'lm'.")] = None,
) -> None:
    """Every registered component kind, name and options (with defaults); experiments; axes."""
    from workbench.catalog import catalog

    typer.echo("\n".join(catalog(kind)))


@app.command()
@friendly
def show(
    experiment: Annotated[str, typer.Argument(help="An experiment name or a .py path.")],
    sets: SetOption = None,
    ablate: AblateOption = None,
    home: HomeOption = None,
) -> None:
    """The resolved spec of an experiment (after --set and --ablate) and its config_id."""
    from workbench.runs import pairs, resolve

    resolved = resolve(experiment, pairs(sets, "--set"), pairs(ablate, "--ablate"), home)
    typer.echo(json.dumps(resolved.spec.flatten(), indent=1, sort_keys=True))
    axes = " ".join(f"{k}={v}" for k, v in resolved.tags.items())
    typer.echo(f"config_id: {resolved.spec.config_id}{'  ' + axes if axes else ''}")


@app.command()
@friendly
def run(
    experiment: Annotated[str, typer.Argument(help="An experiment name or a .py path.")],
    sets: SetOption = None,
    ablate: AblateOption = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds: one run each.")] = "0",
    nproc_per_node: Annotated[int, typer.Option(min=1, help="Processes per machine.")] = 1,
    nnodes: Annotated[int, typer.Option(min=1, help="Machines (run this on each).")] = 1,
    node_rank: Annotated[int | None, typer.Option(help="This machine's rank.")] = None,
    rdzv_endpoint: Annotated[str | None, typer.Option(help="host:port of machine 0.")] = None,
    interface: Annotated[
        str | None, typer.Option(help="Network interface between machines (default: lo).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoints.")] = False,
    tracking_uri: TrackingOption = None,
    home: HomeOption = None,
) -> None:
    """Trains an experiment (one run per seed), tracked in MLflow."""
    from workbench.runs import Processes, RunOptions, pairs, resolve, run_seeds

    resolved = resolve(experiment, pairs(sets, "--set"), pairs(ablate, "--ablate"), home)
    processes = Processes(nproc_per_node, nnodes, node_rank, rdzv_endpoint, interface)
    options = RunOptions(home=home, tracking_uri=tracking_uri, resume=resume)
    for result in run_seeds(resolved, parse_ints(seeds), options, processes):
        if result is not None and result.run_id:
            typer.echo(f"run {result.run_id}: {result.run_dir}")


@app.command()
@friendly
def quickstart(
    steps: Annotated[int, typer.Option(min=1, help="Steps per run.")] = 200,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0",
    home: HomeOption = None,
) -> None:
    """Shapes world + tiny backbones, the baseline and one variant of each of the paper's four
    open questions, then the comparison table: training losses and 4-shot VQA accuracy (about
    17 minutes on 2 CPU cores the first time, 11 once the backbones are built; --seeds 0,1
    doubles the runs and gives intervals)."""
    from workbench.quickstart import quickstart as run_quickstart
    from workbench.report import render_comparison
    from workbench.train.result import home_dir

    table = run_quickstart(steps, parse_ints(seeds), home, say=typer.echo)
    typer.echo(render_comparison(table, counts=False, width=100))
    where = f"{'' if steps == 200 else f' --steps {steps}'} --home {home_dir(home)}"
    if table.is_empty() or (table["note"] != "").any():
        typer.echo(f"\nIntervals need two seeds or more: wb quickstart --seeds 0,1{where}"
                   " (finished runs are kept)")  # fmt: skip
    typer.echo(f"\nMore: wb compare --home {home_dir(home)} ; wb ui --home {home_dir(home)}")


@app.command()
@friendly
def demo(
    family: Annotated[str, typer.Option(help="LM family of the tiny random model.")] = "llama",
    home: HomeOption = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 12,
) -> None:
    """Builds a tiny random Flamingo (saved and loaded like real weights) and generates."""
    from workbench.quickstart import demo as run_demo

    run_demo(family, home, max_new_tokens, say=typer.echo)


@app.command()
@friendly
def ui(
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    host: Annotated[
        str, typer.Option(help="Interface; loopback unless you mean it.")
    ] = "127.0.0.1",
    tracking_uri: TrackingOption = None,
    home: HomeOption = None,
) -> None:
    """Starts the MLflow UI on the workbench's database and prints its URL and that of each
    experiment's runs table."""
    from workbench.track import default_uri
    from workbench.train.result import home_dir

    uri = tracking_uri or default_uri(home_dir(home))
    typer.echo(f"MLflow UI for {uri} at http://{host}:{port}  (Ctrl-C stops it)")
    for name, url in ui_links(uri, f"http://{host}:{port}").items():
        typer.echo(f"  runs of {name}: {url}")
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(ui_command(uri, host, port), check=False)


def ui_links(uri: str, root: str) -> dict[str, str]:
    """Experiment name -> the URL of its runs table (MLflow 3's UI opens an experiment on its
    GenAI overview unless ``workflowType=machine_learning`` is asked for)."""
    from workbench.track import experiment_ids

    return {name: f"{root}/#/experiments/{id_}?workflowType=machine_learning"
            for name, id_ in experiment_ids(uri).items() if name != "Default"}  # fmt: skip


def ui_command(uri: str, host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", uri, "--host", host, "--port", str(port),
    ]  # fmt: skip
