"""The run layer, between the command line (or a search) and the training loop.

It alone turns an experiment, ``--set`` overrides and ``--ablate`` axis values into specs, fills
in the home and the tracking-URI defaults, runs a list of seeds with their tags, and chooses
between this process and a multi-process job. ``wb run``, ``wb quickstart``, ``wb eval`` and a
study's objective all go through it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench import experiments, track
from workbench.axes import apply_all
from workbench.spec import RunSpec, SpecError
from workbench.train.build import check_spec
from workbench.train.launch import Processes, launch_job
from workbench.train.loop import train
from workbench.train.result import RunOptions, RunResult, home_dir

__all__ = ["Processes", "Resolved", "RunOptions", "RunResult", "execute", "resolve", "run_seeds"]


@dataclass(frozen=True)
class Resolved:
    """An experiment with its overrides and axis values applied."""

    experiment: experiments.Experiment
    spec: RunSpec
    choices: dict[str, str]  # axis -> value
    base: RunSpec  # the spec without the axis values: what every variant is compared within

    @property
    def tags(self) -> dict[str, str]:
        """The runs' ``axis.<name>`` tags and the ``base_config_id`` they share."""
        return {"base_config_id": self.base.config_id,
                **{f"axis.{k}": v for k, v in self.choices.items()}}  # fmt: skip


def pairs(items: Sequence[str] | None, what: str) -> dict[str, str]:
    """``KEY=VALUE`` strings (of the option ``what``) as a mapping."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError(f"{what} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def resolve(
    experiment: str | Path,
    sets: Mapping[str, Any] | None = None,
    ablate: Mapping[str, str] | None = None,
    home: str | Path | None = None,
) -> Resolved:
    """The experiment's spec with the axis values of ``ablate`` applied, then ``sets``."""
    loaded = experiments.load(experiment)
    choices, sets = dict(ablate or {}), dict(sets or {})
    built = loaded.build(home)
    return Resolved(loaded, apply_all(built, choices).override(sets), choices, built.override(sets))


def execute(
    spec: RunSpec,
    options: RunOptions | None = None,
    processes: Processes | None = None,
) -> RunResult | None:
    """Runs ``spec`` in this process, or as a job of ``processes`` (``workbench.train.launch``);
    the result comes back on the machine of rank 0 (None on the others).

    The home and tracking URI get their defaults here, and the MLflow store and experiment are
    created before any rank starts (and before anything slow: an unreachable store fails fast).
    """
    options, processes = options or RunOptions(), processes or Processes()
    check_spec(spec, processes.world_size)
    home = home_dir(options.home)
    uri = options.tracking_uri or track.default_uri(home)
    options = dataclasses.replace(options, home=home, tracking_uri=uri)
    if options.track:
        track.prepare(uri, options.experiment or spec.name, home)
    if processes.world_size == 1:
        return train(spec, options)
    return launch_job(spec, processes, options, home, uri)


def run_seeds(
    resolved: Resolved,
    seeds: Sequence[int],
    options: RunOptions | None = None,
    processes: Processes | None = None,
    skip_done: bool = False,
) -> list[RunResult | None]:
    """One run of ``resolved`` per seed, tagged with its axis values, after the experiment's
    inputs are built; ``skip_done`` leaves out seeds whose run already finished."""
    options = options or RunOptions()
    (processes or Processes()).check(resolved.spec)
    home = home_dir(options.home)
    if options.track and options.tracking_uri is not None:  # a bad server fails before the build
        track.prepare(options.tracking_uri, options.experiment or resolved.spec.name, home)
    resolved.experiment.build_inputs(home)
    options = dataclasses.replace(options, home=home, tags={**resolved.tags, **options.tags})
    results: list[RunResult | None] = []
    for seed in seeds:
        spec = resolved.spec.override({"train.seed": seed})
        results.append(finished(spec, home) if skip_done else None)
        if results[-1] is None:
            results[-1] = execute(spec, options, processes)
    return results


def finished(spec: RunSpec, home: str | Path | None = None) -> RunResult | None:
    """The result of ``spec``'s run if it has finished (its ``result.json``), else None."""
    from workbench.train.result import run_dir

    path = run_dir(spec, home) / "result.json"
    return RunResult.from_json(path.read_text()) if path.exists() else None


def evaluate_checkpoint(
    run_or_checkpoint: Path,
    tasks: Sequence[str],
    shots: Sequence[int],
    *,
    data: Path | None = None,
    trials: int = 3,
    subset: int | None = None,
    demos: str = "random",
    options: RunOptions | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """Few-shot evaluation of a trained run's checkpoint; the metrics are added to its MLflow
    run (``eval/<task>/<k>shot`` at the checkpoint's step) when it has one, and the per-item
    results (parquet, under the checkpoint's ``eval/``) as its artifacts."""
    from workbench.eval.run import evaluate_tasks
    from workbench.train.checkpoint import load_model, resolve

    checkpoint = resolve(run_or_checkpoint)
    model, processor, tokenizer, spec = load_model(checkpoint)
    root = data or Path(spec.eval.data)
    if not str(root) or not root.is_dir():
        raise SpecError("no evaluation directory: pass --data DIR (e.g. <world>/eval)")
    scores = evaluate_tasks(model, tokenizer, processor, root, tasks, shots, trials=trials,
                            subset=subset, demos=demos, items_dir=checkpoint / "eval")  # fmt: skip
    metrics: dict[str, float] = {}
    for score in scores:
        metrics[score.result.key] = score.result.mean
        say(score.line())
    state = json.loads((checkpoint / "state.json").read_text())
    if state.get("run_id") and (options is None or options.track):
        home = home_dir(options.home if options else None)
        uri = (options.tracking_uri if options else None) or track.default_uri(home)
        track.log_metrics_to(uri, state["run_id"], metrics, int(state["step"]))
        files = [score.items_file for score in scores if score.items_file is not None]
        track.log_artifacts(uri, state["run_id"], files, "eval")
        say(f"logged to MLflow run {state['run_id']} at step {state['step']}")
    return metrics


def evaluate_released(
    checkpoint: Path,
    preset: str,
    tasks: Sequence[str],
    shots: Sequence[int],
    *,
    data: Path,
    trials: int = 3,
    subset: int | None = None,
    demos: str = "random",
    home: str | Path | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """Few-shot evaluation of a released model (``preset``'s backbones and its released
    ``checkpoint``) on the benchmark files under ``data``; each result's items are written under
    ``<home>/released/<preset>/eval``."""
    from workbench.eval.run import evaluate_tasks
    from workbench.model.presets import load_released

    if not data.is_dir():
        raise SpecError(f"--data: {data} is not a directory of evaluation files")
    model, processor, tokenizer = load_released(preset, checkpoint)
    items = home_dir(home) / "released" / preset / "eval"
    scores = evaluate_tasks(model, tokenizer, processor, data, tasks, shots, trials=trials,
                            subset=subset, demos=demos, items_dir=items)  # fmt: skip
    for score in scores:
        say(score.line())
    say(f"per-item results: {items}")
    return {score.result.key: score.result.mean for score in scores}
