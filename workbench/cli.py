"""The ``wb`` command line."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Flamingo Workbench.")
data_app = typer.Typer(no_args_is_help=True, help="Write and inspect datasets.")
backbones_app = typer.Typer(no_args_is_help=True, help="The shapes world's pretrained backbones.")
app.add_typer(data_app, name="data")
app.add_typer(backbones_app, name="backbones")

F = TypeVar("F", bound=Callable[..., Any])

HomeOption = Annotated[
    Path | None, typer.Option(help="Working directory (default $WB_HOME, else ./wb-runs).")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a spec key: --set train.steps=100 (repeatable)."),
]
AblateOption = Annotated[
    list[str] | None,
    typer.Option("--ablate", help="Apply an axis variant: --ablate xattn_every=2 (repeatable)."),
]

#: The quickstart's one variant per axis of the paper's open questions.
QUICKSTART_VARIANTS = {
    "special_embeddings": "frozen",
    "xattn_every": "2",
    "mixture": "1:1",
    "mmc4_threshold": "0.32",
}


def _home(home: Path | None) -> Path:
    from workbench.train.loop import home_dir

    return home_dir(home)


def _friendly(command: F) -> F:
    """User mistakes print one line (and the fix), not a stack trace, and exit with 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from workbench.registry import RegistryError
        from workbench.spec import SpecError
        from workbench.track import TrackingError

        try:
            return command(*args, **kwargs)
        except (SpecError, RegistryError, TrackingError, FileNotFoundError, FileExistsError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except OSError as e:  # e.g. a model that is neither local nor downloadable
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    from workbench.spec import SpecError

    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError(f"{what} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _resolve(
    experiment: str, sets: list[str] | None, ablate: list[str] | None, home: Path | None
) -> tuple[Any, Any, dict[str, str]]:
    """(experiment, spec, axis choices) for the command line's EXPERIMENT --set --ablate."""
    from workbench import experiments
    from workbench.axes import apply_all

    loaded = experiments.load(experiment)
    accepts_home = "home" in inspect.signature(loaded.spec).parameters
    spec = loaded.spec(home=_home(home)) if accepts_home else loaded.spec()
    choices = _pairs(ablate, "--ablate")
    spec = apply_all(spec, choices)
    spec = spec.override(_pairs(sets, "--set"))
    return loaded, spec, choices


def _prepare(loaded: Any, home: Path | None) -> None:
    if loaded.prepare is not None:
        accepts_home = "home" in inspect.signature(loaded.prepare).parameters
        loaded.prepare(home=_home(home)) if accepts_home else loaded.prepare()


def _options(obj: Any) -> str:
    """``(a=1, b=2)`` for a dataclass (or dataclass type) of options, else ``""``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # an instance: its values
        values = [
            f"{f.name}={getattr(obj, f.name)!r}"
            for f in dataclasses.fields(obj)
            if not callable(getattr(obj, f.name))
        ]
        return f"({', '.join(values)})"
    if dataclasses.is_dataclass(obj):
        fields = [f for f in dataclasses.fields(obj) if f.init]
        parts = []
        for f in fields:
            if f.default is not dataclasses.MISSING:
                parts.append(f"{f.name}={f.default!r}")
            elif f.default_factory is not dataclasses.MISSING:
                parts.append(f"{f.name}={f.default_factory()!r}")
            else:
                parts.append(f.name)
        return f"({', '.join(parts)})"
    options = getattr(obj, "options_type", None)
    return _options(options) if options is not None else ""


@app.command("list")
@_friendly
def list_components(
    kind: Annotated[str | None, typer.Argument(help="Only this kind, e.g. 'lm'.")] = None,
) -> None:
    """Every registered component kind, name and options (with defaults); experiments; axes."""
    import workbench.model
    import workbench.model.presets
    import workbench.spec  # noqa: F401  (these imports register the components)
    from workbench import experiments
    from workbench.axes import load_ablations
    from workbench.registry import REGISTRIES

    load_ablations()
    kinds = [*sorted(REGISTRIES), "experiment"]
    if kind is not None and kind not in kinds:
        typer.echo(f"error: unknown kind {kind!r}. Known: {', '.join(kinds)}", err=True)
        raise typer.Exit(2)
    for name in kinds if kind is None else [kind]:
        if name == "experiment":
            typer.echo(f"experiment: {', '.join(experiments.names())}")
            continue
        registry = REGISTRIES[name]
        typer.echo(f"{name}:")
        for item_name, item in registry.items():
            if name == "axis":
                axis: Any = item
                extra = " + open values" if axis.parse else ""
                span = f", span {axis.span}" if axis.span else ""
                values = ", ".join(axis.values())
                typer.echo(f"  {item_name}: {values}{extra}{span} (baseline {axis.baseline})")
            else:
                typer.echo(f"  {item_name}{_options(item)}")


@app.command()
@_friendly
def show(
    experiment: Annotated[str, typer.Argument(help="An experiment name or a .py path.")],
    sets: SetOption = None,
    ablate: AblateOption = None,
    home: HomeOption = None,
) -> None:
    """The resolved spec of an experiment (after --set and --ablate) and its config_id."""
    _, spec, choices = _resolve(experiment, sets, ablate, home)
    typer.echo(json.dumps(spec.flatten(), indent=1, sort_keys=True))
    axes = " ".join(f"axis.{k}={v}" for k, v in choices.items())
    typer.echo(f"config_id: {spec.config_id}{'  ' + axes if axes else ''}")


@app.command()
@_friendly
def run(
    experiment: Annotated[str, typer.Argument(help="An experiment name or a .py path.")],
    sets: SetOption = None,
    ablate: AblateOption = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds: one run each.")] = "0",
    nproc_per_node: Annotated[int, typer.Option(min=1, help="Processes per machine.")] = 1,
    nnodes: Annotated[int, typer.Option(min=1, help="Machines (run this on each).")] = 1,
    node_rank: Annotated[int | None, typer.Option(help="This machine's rank.")] = None,
    rdzv_endpoint: Annotated[str | None, typer.Option(help="host:port of rank 0.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoints.")] = False,
    tracking_uri: Annotated[str | None, typer.Option(help="An MLflow tracking URI.")] = None,
    home: HomeOption = None,
) -> None:
    """Trains an experiment (one run per seed), tracked in MLflow."""
    from workbench.spec import SpecError
    from workbench.train.loop import run as run_spec

    loaded, spec, choices = _resolve(experiment, sets, ablate, home)
    seed_list = _ints(seeds)
    if (nproc_per_node > 1 or nnodes > 1) and spec.train.strategy == "single":
        raise SpecError(
            "several processes need a data-parallel strategy: add --set train.strategy=fsdp "
            "(or ddp)"
        )
    if tracking_uri is not None:  # an unreachable server fails before anything slow
        from workbench.track import prepare

        prepare(tracking_uri, spec.name)
    _prepare(loaded, home)
    for seed in seed_list:
        result = run_spec(
            spec.override({"train.seed": seed}),
            nproc_per_node=nproc_per_node,
            nnodes=nnodes,
            node_rank=node_rank,
            rdzv_endpoint=rdzv_endpoint,
            home=_home(home),
            tracking_uri=tracking_uri,
            tags={f"axis.{k}": v for k, v in choices.items()},
            resume=resume,
        )
        if result is not None and result.run_id:
            typer.echo(f"run {result.run_id}: {result.run_dir}")


def _ints(text: str, option: str = "--seeds") -> list[int]:
    """A comma-separated list of integers given to ``option``."""
    from workbench.spec import SpecError

    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SpecError(f"{option} expects comma-separated integers, got {text!r}") from None
    if not values:
        raise SpecError(f"{option} is empty")
    return values


@app.command("compare")
@_friendly
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
    tracking_uri: Annotated[str | None, typer.Option(help="An MLflow tracking URI.")] = None,
    home: HomeOption = None,
) -> None:
    """Finished runs grouped by config: mean, std, 95% CI over seeds, paired diff to baseline."""
    from workbench.report import DEFAULT_METRICS, compare, runs_frame
    from workbench.spec import SpecError
    from workbench.track import default_uri, experiment_names

    uri = tracking_uri or default_uri(_home(home))
    frame = runs_frame(uri, experiment)
    if frame.is_empty():
        known = experiment_names(uri)
        raise SpecError(
            f"no finished runs in experiment {experiment!r} at {uri}; experiments there: "
            f"{', '.join(known) or 'none'}"
        )
    try:
        table = compare(frame, metric or DEFAULT_METRICS, group_by)
    except ValueError as e:
        raise SpecError(str(e)) from None
    _emit(table, format, output)


def _emit(table: Any, format: str, output: Path | None) -> None:
    from workbench.report import to_markdown
    from workbench.spec import SpecError

    if format == "parquet":
        if output is None:
            raise SpecError("--format parquet needs --output FILE")
        table.write_parquet(output)
        typer.echo(f"wrote {output}")
        return
    if format == "table":
        import polars as pl

        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=240, fmt_str_lengths=40):
            text = str(table)
    elif format == "markdown":
        text = to_markdown(table)
    elif format == "csv":
        text = table.write_csv()
    else:
        raise SpecError(f"unknown format {format!r}; valid: table, markdown, csv, parquet")
    if output is not None:
        output.write_text(text + "\n")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text)


@app.command()
@_friendly
def ui(
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    host: Annotated[
        str, typer.Option(help="Interface; loopback unless you mean it.")
    ] = "127.0.0.1",
    tracking_uri: Annotated[str | None, typer.Option(help="An MLflow tracking URI.")] = None,
    home: HomeOption = None,
) -> None:
    """Starts the MLflow UI on the workbench's database and prints its URL."""
    from workbench.track import default_uri

    uri = tracking_uri or default_uri(_home(home))
    command = ui_command(uri, host, port)
    typer.echo(f"MLflow UI for {uri} at http://{host}:{port}  (Ctrl-C stops it)")
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(command, check=False)


def ui_command(uri: str, host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", uri, "--host", host, "--port", str(port),
    ]  # fmt: skip


@app.command()
@_friendly
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
    tracking_uri: Annotated[str | None, typer.Option(help="An MLflow tracking URI.")] = None,
    home: HomeOption = None,
) -> None:
    """Runs (or continues) an Optuna study; every trial's runs are MLflow child runs."""
    from workbench import experiments
    from workbench.search import load_studies, run_study, trials_table
    from workbench.spec import SpecError

    chosen = load_studies().get(study)
    changes: dict[str, Any] = {}
    if trials is not None:
        changes["trials"] = trials
    if sampler is not None:
        if sampler not in ("grid", "tpe"):
            raise SpecError(f"--sampler: {sampler!r} is not grid or tpe")
        changes["design"] = "tpe" if sampler == "tpe" else chosen.design
    if seeds is not None:
        changes["seeds"] = tuple(_ints(seeds))
    if changes:
        chosen = _replace_study(chosen, changes)
    loaded = experiments.load(chosen.experiment)
    _prepare(loaded, home)
    done = run_study(chosen, storage=storage, workers=workers, home=_home(home),
                     tracking_uri=tracking_uri)  # fmt: skip
    import polars as pl

    typer.echo(str(pl.DataFrame(trials_table(done))))
    typer.echo(f"report: wb report {study} --home {_home(home)}")


def _replace_study(study: Any, changes: dict[str, Any]) -> Any:
    """A variant of a registered study under a derived name (its own Optuna study)."""
    from workbench.search import STUDIES

    suffix = "-".join(f"{k}={v}" for k, v in sorted(changes.items())).replace(" ", "")
    name = f"{study.name}[{suffix}]"
    if name in STUDIES:
        return STUDIES.get(name)
    return dataclasses.replace(study, name=name, **changes)


@app.command()
@_friendly
def report(
    study: Annotated[str, typer.Argument(help="A study that has run.")],
    out: Annotated[
        Path | None, typer.Option(help="Directory (default <home>/reports/STUDY).")
    ] = None,
    storage: Annotated[str | None, typer.Option(help="The study's Optuna storage.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="An MLflow tracking URI.")] = None,
    home: HomeOption = None,
) -> None:
    """Markdown + HTML report of a study (effects with CIs, curves, cost), logged to MLflow."""
    import polars as pl

    from workbench.report import write_study_report
    from workbench.search import (
        importance,
        load_studies,
        open_study,
        pareto_front,
        storage_for,
        trials_table,
    )
    from workbench.track import default_uri, log_artifacts

    chosen = load_studies().get(study)
    where = _home(home)
    uri = tracking_uri or default_uri(where)
    optuna_study = open_study(chosen, storage_for(storage, where))
    scores, method = importance(optuna_study)
    paths = write_study_report(
        uri, chosen.mlflow_experiment(where), chosen.name, chosen.objective,
        out or where / "reports" / study,
        trials=pl.DataFrame(trials_table(optuna_study)), importance=scores,
        importance_method=method, pareto=pl.DataFrame(pareto_front(optuna_study)),
    )  # fmt: skip
    parent = optuna_study.user_attrs.get("mlflow_parent_run_id")
    if parent:
        log_artifacts(uri, parent, list(paths.values()), "report")
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")


@app.command("eval")
@_friendly
def eval_command(
    run_or_checkpoint: Annotated[Path, typer.Argument(help="A run directory or checkpoint.")],
    task: Annotated[list[str], typer.Option(help="Registered tasks (repeatable).")],
    shots: Annotated[str, typer.Option(help="Comma-separated shot counts.")] = "0,4",
    data: Annotated[Path | None, typer.Option(help="Eval directory (default: the spec's).")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Demonstration seeds.")] = 3,
    subset: Annotated[int | None, typer.Option(min=1, help="Test examples.")] = None,
    demos: Annotated[str, typer.Option(help="random or rices.")] = "random",
    tracking_uri: Annotated[str | None, typer.Option(help="An MLflow tracking URI.")] = None,
    home: HomeOption = None,
) -> None:
    """Few-shot evaluation of a trained run, logged to its MLflow run as eval/<task>/<k>shot."""
    from workbench.eval.fewshot import evaluate, majority_baseline
    from workbench.eval.tasks import load_task
    from workbench.spec import SpecError
    from workbench.track import default_uri, log_metrics_to
    from workbench.train.checkpoint import load_model, resolve

    if demos not in ("random", "rices"):
        raise SpecError(f"--demos: {demos!r} is not random or rices")
    shot_list = _ints(shots, "--shots")
    checkpoint = resolve(run_or_checkpoint)
    model, processor, tokenizer, spec = load_model(checkpoint)
    root = data or Path(spec.eval.data)
    if not str(root) or not root.is_dir():
        raise SpecError("no evaluation directory: pass --data DIR (e.g. <world>/eval)")
    state = json.loads((checkpoint / "state.json").read_text())
    metrics: dict[str, float] = {}
    for name in task:
        dataset = load_task(name, root)
        floor = majority_baseline(dataset, subset)
        for k in shot_list:
            result = evaluate(
                model, tokenizer, processor, dataset, k, trials=trials, subset=subset,
                demos=demos,  # type: ignore[arg-type]
            )  # fmt: skip
            metrics[result.key] = result.mean
            typer.echo(
                f"{name} {k}-shot {result.metric}: {result.mean:.4f} ± {result.std:.4f} over "
                f"{trials} trials, {result.n} examples (majority answer: {floor:.4f})"
            )
    if state.get("run_id"):
        uri = tracking_uri or default_uri(_home(home))
        log_metrics_to(uri, state["run_id"], metrics, int(state["step"]))
        typer.echo(f"logged to MLflow run {state['run_id']} at step {state['step']}")


@data_app.command("shapes")
@_friendly
def data_shapes(
    out: Annotated[Path, typer.Argument(help="Output directory.")],
    pairs: Annotated[int, typer.Option(min=0, help="LAION-style image-text pairs.")] = 2000,
    docs: Annotated[int, typer.Option(min=0, help="MMC4-style documents.")] = 1000,
    eval_items: Annotated[int, typer.Option("--eval", min=0, help="Evaluation items.")] = 200,
    seed: int = 0,
    image_size: Annotated[int, typer.Option(min=16)] = 64,
    per_shard: Annotated[int, typer.Option(min=1)] = 250,
) -> None:
    """Writes the shapes world: LAION and MMC4 shards in the reference formats, and eval sets."""
    from workbench.data.shapes import write_shapes_world
    from workbench.data.stream import shard_pattern

    started = time.perf_counter()
    shards = write_shapes_world(
        out,
        n_pairs=pairs,
        n_docs=docs,
        n_eval=eval_items,
        seed=seed,
        image_size=image_size,
        per_shard=per_shard,
    )
    for name, paths in shards.items():
        typer.echo(f"{name}: {len(paths)} shards  {shard_pattern(paths) if paths else ''}")
    typer.echo(f"wrote {out} in {time.perf_counter() - started:.1f} s")


@data_app.command("stats")
@_friendly
def data_stats(
    shards: Annotated[str, typer.Argument(help="MMC4 shards: a brace pattern.")],
    thresholds: Annotated[str, typer.Option(help="Comma-separated.")] = "0.24,0.28,0.32",
    assignment: Annotated[str, typer.Option(help="one_to_one or best_sentence.")] = "one_to_one",
    min_image_bytes: Annotated[int, typer.Option(min=0)] = 0,
    plot: Annotated[Path | None, typer.Option(help="Also save a PNG plot here.")] = None,
    format: Annotated[str, typer.Option(help="table, markdown or csv.")] = "table",
) -> None:
    """What each MMC4 similarity threshold keeps: images, documents, images per document."""
    from workbench.data.stats import mmc4_threshold_table, plot_threshold_table
    from workbench.data.stream import expand_shards
    from workbench.spec import SpecError

    try:
        values = [float(t) for t in thresholds.split(",") if t.strip()]
    except ValueError:
        raise SpecError(
            f"--thresholds expects comma-separated numbers, got {thresholds!r}"
        ) from None
    missing = [p for p in expand_shards(shards) if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shards do not exist, e.g. {missing[0]}")
    table = mmc4_threshold_table(
        shards, values, assignment=assignment, min_image_bytes=min_image_bytes
    )
    _emit(table, format, None)
    if plot is not None:
        typer.echo(f"plot: {plot_threshold_table(table, plot)}")


@backbones_app.command("build")
@_friendly
def backbones_build(
    size: Annotated[str, typer.Option(help="tiny (about 3 min on 2 cores) or small.")] = "tiny",
    seed: int = 0,
    home: HomeOption = None,
) -> None:
    """Builds (or finds cached) the shapes CLIP and LM; prints where and how good they are."""
    from workbench.backbones.shapes import SIZES, build_shapes_backbones
    from workbench.spec import SpecError

    if size not in SIZES:
        raise SpecError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    built = build_shapes_backbones(_home(home) / "backbones", size, seed)
    typer.echo(f"backbones: {built.root}")
    typer.echo(json.dumps(built.quality, indent=1))


@app.command()
@_friendly
def quickstart(
    steps: Annotated[int, typer.Option(min=1, help="Steps per run.")] = 200,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0",
    home: HomeOption = None,
) -> None:
    """Shapes world + tiny backbones, the baseline and one variant of each of the paper's four
    open questions, then the comparison table (about 10 minutes on 2 CPU cores)."""
    from workbench import experiments
    from workbench.axes import apply_all
    from workbench.report import compare, runs_frame, to_markdown
    from workbench.track import default_uri
    from workbench.train.loop import run_dir, train

    where = _home(home)
    loaded = experiments.load("shapes_tiny")
    typer.echo(f"[1/3] shapes world and tiny backbones under {where} (cached after the first time)")
    _prepare(loaded, where)
    base = loaded.spec(home=where).override({"train.steps": steps, "train.checkpoint_every": 0})
    plan: list[tuple[str, dict[str, str]]] = [("baseline", {})]
    plan += [(f"{axis}={value}", {axis: value}) for axis, value in QUICKSTART_VARIANTS.items()]
    seed_list = _ints(seeds)
    total = len(plan) * len(seed_list)
    done = 0
    for label, choices in plan:
        for seed in seed_list:
            done += 1
            spec = apply_all(base, choices).override({"train.seed": seed})
            typer.echo(f"[2/3] run {done}/{total}: {label}, seed {seed}, {steps} steps")
            if (run_dir(spec, where) / "result.json").exists():
                typer.echo("      already done")
                continue
            train(spec, home=where, tags={f"axis.{k}": v for k, v in choices.items()})
    typer.echo("[3/3] comparison (training losses; paired by seed against the baseline)")
    table = compare(runs_frame(default_uri(where), base.name)).drop("config_id")
    typer.echo(to_markdown(table.select([c for c in table.columns if not c.startswith("axis.")])))
    typer.echo(f"\nMore: wb compare --home {where} ; wb ui --home {where}")


@app.command()
@_friendly
def demo(
    family: Annotated[str, typer.Option(help="LM family of the tiny random model.")] = "llama",
    home: HomeOption = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 12,
) -> None:
    """Builds a tiny random Flamingo (saved and loaded like real weights) and generates."""
    import torch
    from PIL import Image
    from transformers.utils import logging as hf_logging

    from workbench.model import create_model_and_transforms
    from workbench.model.lm import LM_ADAPTERS
    from workbench.model.tiny import save_tiny_lm

    if family not in LM_ADAPTERS:
        typer.echo(f"error: unknown family {family!r}. Known: {', '.join(LM_ADAPTERS.names())}")
        raise typer.Exit(2)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    lm_dir = save_tiny_lm(family, _home(home) / "tiny" / family)
    torch.manual_seed(0)
    model, processor, tokenizer = create_model_and_transforms("wb-tiny-vit", str(lm_dir))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    typer.echo(f"model: wb-tiny-vit + tiny {family} from {lm_dir}")
    typer.echo(f"parameters: {total:,} ({trainable:,} trainable)")

    pictures = [Image.new("RGB", (48, 48), colour) for colour in ("red", "blue")]
    images = torch.stack([processor(p) for p in pictures])[None]  # (1, 2, 3, H, W)
    prompt = "<image>Output: a red square.<|endofchunk|><image>Output:"
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids
    out = model.eval().generate(images, None, input_ids, max_new_tokens=max_new_tokens)
    typer.echo(f"prompt: {prompt}")
    new_tokens = tokenizer.decode(out[0, input_ids.shape[1] :])
    typer.echo(f"generated (untrained weights, so arbitrary text): {new_tokens!r}")


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one progress bar (ours) per run
    hf_logging.set_verbosity_error()
    app()
