"""The :class:`Study` definition, its grid cells, and the registry ``ablations/studies.py`` fills.

Nothing here imports optuna: a study is plain data until :func:`workbench.search.run_study`
opens it, so ``wb list``, ``wb show`` and ``--ablate`` load the studies without it.

A study's name is its identity: the Optuna study, the MLflow parent run and ``wb report NAME``
all use it. ``wb search NAME --seeds/--trials/--sampler`` runs a variant under the same name
(:func:`study_variant`); what it ran with is recorded on the study (see
:mod:`workbench.search.storage`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workbench.registry import Registry
from workbench.spec import RunSpec, SpecError


@dataclass(frozen=True)
class Study:
    """A question: a base experiment, the axes searched, the objective, seeds and budget.

    Attributes:
        axes: axis name -> the values searched (categorical), or (low, high) floats for a
            continuous search over the axis's open values.
        objective: the metric of each run (``final/...`` or ``eval/...``), averaged over seeds.
        overrides: spec changes for every run of the study (e.g. a shorter ``train.steps``).
        design: ``grid`` (every combination), or ``one_at_a_time`` (the baseline and each
            axis's values with the others at baseline: the effect of each axis alone).
        register: add it to :data:`STUDIES` (False for :func:`study_variant`'s variants, which
            share the name of the registered study).
    """

    name: str
    experiment: str
    axes: Mapping[str, tuple[Any, ...]]
    objective: str = "final/loss/mmc4"
    direction: Literal["minimize", "maximize"] = "minimize"
    seeds: tuple[int, ...] = (0, 1)
    trials: int | None = None  # default: every grid cell
    design: Literal["grid", "one_at_a_time", "tpe"] = "grid"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    pruner: Literal["none", "median", "hyperband"] = "none"  # on ``eval/...`` objectives
    nproc_per_node: int = 1  # >1: each trial's run is one multi-process job (ddp/fsdp strategy)
    compute_objective: bool = False  # also minimise the measured seconds of the trial's runs
    retries: int = 2  # times a later ``wb search`` runs a failed or interrupted cell again
    doc: str = ""
    register: bool = field(default=True, kw_only=True, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.register:
            STUDIES.add(self.name, self)

    def base_spec(self, home: Path) -> RunSpec:
        """The base experiment's spec with the study's overrides (no axis values)."""
        from workbench import experiments

        # ``build`` passes the home only to a ``spec()`` that takes one
        return experiments.load(self.experiment).build(home).override(dict(self.overrides))

    def mlflow_experiment(self, home: Path) -> str:
        """The MLflow experiment its runs log to (the base spec's name)."""
        return str(self.base_spec(home).name)

    def baseline(self) -> dict[str, str]:
        from workbench.axes import AXES, load_ablations

        load_ablations()
        return {name: AXES.get(name).baseline for name in self.axes}

    def cells(self) -> list[dict[str, str]]:
        """The configurations a grid or one-at-a-time design runs, the baseline first."""
        base = self.baseline()
        categorical = {k: [str(v) for v in vs] for k, vs in self.axes.items()}
        if self.design == "one_at_a_time":
            cells = [base]
            for name, values in categorical.items():
                cells += [{**base, name: v} for v in values if v != base[name]]
        else:
            names = list(categorical)
            cells = [dict(zip(names, combo, strict=True))
                     for combo in itertools.product(*categorical.values())]  # fmt: skip
            cells.sort(key=lambda c: c != base)
        unique: list[dict[str, str]] = []
        for cell in cells:
            if cell not in unique:
                unique.append(cell)
        return unique

    def summary(self) -> str:
        """One line for ``wb list``: its axes and values, objective, seeds and design."""
        axes = " ".join(f"{k}={'|'.join(map(str, vs))}" for k, vs in self.axes.items())
        seeds = ",".join(map(str, self.seeds))
        return f"{axes}; {self.direction} {self.objective}; seeds {seeds}; {self.design}"


STUDIES: Registry[Study] = Registry("study")


def study_variant(
    study: Study,
    *,
    trials: int | None = None,
    sampler: str | None = None,
    seeds: tuple[int, ...] | None = None,
) -> Study:
    """``study`` with another budget, sampler (``grid`` or ``tpe``) or seeds, under the same
    name (the same Optuna study and MLflow parent run) and not registered; the study itself
    when nothing changes."""
    changes: dict[str, Any] = {}
    if trials is not None:
        changes["trials"] = trials
    if sampler is not None:
        if sampler not in ("grid", "tpe"):
            raise SpecError(f"--sampler: {sampler!r} is not grid or tpe")
        changes["design"] = "tpe" if sampler == "tpe" else study.design
    if seeds is not None:
        if not seeds:
            raise SpecError("--seeds: give at least one seed")
        changes["seeds"] = tuple(seeds)
    if not changes:
        return study
    return dataclasses.replace(study, register=False, **changes)


def budget(study: Study) -> int:
    return study.trials or len(study.cells())


def study_json(study: Study) -> str:
    fields = [f.name for f in dataclasses.fields(study) if f.name != "register"]
    data = {name: getattr(study, name) for name in fields}
    data["axes"] = {k: list(v) for k, v in study.axes.items()}
    data["overrides"] = dict(study.overrides)
    data["seeds"] = list(study.seeds)
    return json.dumps(data)


def study_from_json(text: str) -> Study:
    """The study :func:`study_json` wrote (not registered: its name may be taken)."""
    data = json.loads(text)
    data["axes"] = {k: tuple(v) for k, v in data["axes"].items()}
    data["seeds"] = tuple(data["seeds"])
    return Study(**data, register=False)


_loaded: set[Path] = set()


def load_studies() -> Registry[Study]:
    """Registers the axes, then the studies of ``ablations/studies.py`` (of the checkout and of
    the working directory, the same folders as :func:`workbench.axes.load_ablations`), once."""
    from workbench.axes import STUDIES_FILE, ablation_directories, load_ablations

    load_ablations()
    for folder in ablation_directories():
        path = (folder / STUDIES_FILE).resolve()
        if path.is_file() and path not in _loaded:
            _loaded.add(path)
            runpy.run_path(str(path), run_name="ablations.studies")
    return STUDIES
