"""What ``wb search`` shows while it runs and when it ends.

:class:`Quiet` is what a search tells of its progress; :class:`LiveDisplay` shows it in the
terminal (rich): the trials done, running and queued (counted in the storage, so workers of other
processes and machines count too), the current run's step and loss, the elapsed and the estimated
remaining time. Off when stdout is not a terminal and under pytest. :func:`trials_table` is the
final table, run ids in full.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class Quiet:
    """A search's progress, told to nobody (stdout is no terminal, tests, worker processes)."""

    #: the display owns the terminal: worker processes write to log files instead
    owns_terminal = False

    def note(self, text: str) -> None: ...

    def trial_started(self, number: int, choices: Mapping[str, str]) -> None: ...

    def run_started(self, seed: int, index: int, steps: int) -> None: ...

    def step(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def refresh(self, force: bool = False) -> None: ...

    def __enter__(self) -> Quiet:
        return self

    def __exit__(self, *exc: object) -> None: ...


class LiveDisplay(Quiet):
    """A live view of ``optuna_study``'s trials (``budget`` in all, ``workers`` at a time) and of
    this process's current run; the storage is read at most every ``poll_s`` seconds."""

    owns_terminal = True

    def __init__(
        self,
        optuna_study: optuna.Study,
        budget: int,
        workers: int = 1,
        console: Console | None = None,
        poll_s: float = 3.0,
    ) -> None:
        self.optuna_study, self.budget, self.workers, self.poll_s = (
            optuna_study, budget, workers, poll_s
        )  # fmt: skip
        self.counts: dict[str, int] = {}
        self.total = budget
        self.durations: list[float] = []  # seconds of the finished trials
        self.best: float | None = None
        self.started = time.monotonic()
        self.polled = 0.0
        self.trial: tuple[int, str] | None = None  # (number, "axis=value ...")
        self.trial_clock = 0.0
        self.run: dict[str, Any] = {}  # seed, index, steps, step, loss
        self.notes: list[str] = []
        self.handlers: list[tuple[logging.StreamHandler[Any], Any]] = []
        self.seeds = len(optuna_study.user_attrs.get("seeds") or [1])
        self.live = Live(console=console, get_renderable=self.render, refresh_per_second=4)
        self.refresh(force=True)

    def __enter__(self) -> LiveDisplay:
        self.live.start()
        # optuna's log handler holds the stderr it was made with; the display's prints above it
        for handler in logging.getLogger("optuna").handlers:
            if isinstance(handler, logging.StreamHandler):
                self.handlers.append((handler, handler.stream))
                handler.setStream(sys.stderr)
        return self

    def __exit__(self, *exc: object) -> None:
        for handler, stream in self.handlers:
            handler.setStream(stream)
        self.handlers = []
        self.refresh(force=True)
        self.live.stop()

    def note(self, text: str) -> None:
        self.notes.append(text)

    def trial_started(self, number: int, choices: Mapping[str, str]) -> None:
        self.trial = (number, " ".join(f"{k}={v}" for k, v in choices.items()))
        self.trial_clock = time.monotonic()
        self.refresh(force=True)

    def run_started(self, seed: int, index: int, steps: int) -> None:
        self.run = {"seed": seed, "index": index, "steps": steps, "step": 0, "loss": None}

    def step(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.update(step=step, loss=metrics.get("loss", self.run.get("loss")))
        self.refresh()

    def refresh(self, force: bool = False) -> None:
        """Counts the trials by state in the storage (every ``poll_s`` seconds, or now)."""
        if not force and time.monotonic() - self.polled < self.poll_s:
            return
        self.polled = time.monotonic()
        trials = self.optuna_study.get_trials(deepcopy=False)
        self.counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
        self.total = max(self.budget, len(trials))  # a grid runs every cell it enqueued
        self.durations = [
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in trials
            if t.state in _FINISHED and t.datetime_start and t.datetime_complete
        ]
        values = [t.values[0] for t in trials if t.state == TrialState.COMPLETE and t.values]
        maximize = self.optuna_study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        self.best = (max if maximize else min)(values) if values else None

    def _fraction(self) -> float | None:
        """How much of the current trial is done (its seeds one after the other)."""
        if not self.run or not self.run["steps"]:
            return None
        return (self.run["index"] + self.run["step"] / self.run["steps"]) / self.seeds

    def render(self) -> Group:
        done = sum(self.counts.get(s.name, 0) for s in _FINISHED)
        running = self.counts.get("RUNNING", 0)
        queued = max(self.total - done - running, 0)
        elapsed = time.monotonic() - self.started
        in_trial = time.monotonic() - self.trial_clock if self.trial else 0.0
        left = remaining_seconds(self.durations, max(self.total - done, 0), self.workers,
                                 self._fraction(), in_trial)  # fmt: skip
        head = Table.grid(padding=(0, 1))
        head.add_row(
            Text("search", style="bold"), Text(self.optuna_study.study_name, style="cyan"),
            ProgressBar(total=max(self.total, 1), completed=done, width=30),
            f"{done}/{self.total} trials", f"elapsed {_clock(elapsed)}",
            f"left {'~' + _clock(left) if left is not None else '?'}",
        )  # fmt: skip
        best = f"; best {self.best:.4g}" if self.best is not None else ""
        lines: list[Any] = [head, Text(
            f"trials: {self.counts.get('COMPLETE', 0)} complete, {self.counts.get('PRUNED', 0)} "
            f"pruned, {self.counts.get('FAIL', 0)} failed; {running} running, {queued} queued"
            + best
        )]  # fmt: skip
        lines += [Text(note, style="dim") for note in self.notes]
        if self.trial and self.run:
            loss = self.run["loss"]
            run = Table.grid(padding=(0, 1))
            run.add_row(
                f"  seed {self.run['seed']} ({self.run['index'] + 1}/{self.seeds})",
                ProgressBar(total=max(self.run["steps"], 1), completed=self.run["step"], width=30),
                f"step {self.run['step']}/{self.run['steps']}",
                f"loss {loss:.4f}" if loss is not None else "",
            )  # fmt: skip
            lines += [Text(f"  trial {self.trial[0]}: {self.trial[1]}"), run]
        return Group(*lines)


def remaining_seconds(
    durations: list[float],
    remaining: int,
    workers: int,
    fraction: float | None = None,
    in_trial: float = 0.0,
) -> float | None:
    """The estimated seconds left for ``remaining`` trials (the current one included) on
    ``workers``: from the mean of the finished trials' ``durations``, else from the current
    trial's progress (``fraction`` done after ``in_trial`` seconds); None before either."""
    if remaining <= 0:
        return 0.0
    if durations:
        per_trial = sum(durations) / len(durations)
    elif fraction:
        per_trial = in_trial / fraction
    else:
        return None
    return max(per_trial * remaining / max(workers, 1) - in_trial, 0.0)


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def watch(optuna_study: optuna.Study, budget: int, workers: int, live: bool | None = None) -> Quiet:
    """A :class:`LiveDisplay` when ``live`` (default: stdout is a terminal, outside pytest),
    else :class:`Quiet`."""
    if live is None:
        live = sys.stdout.isatty() and "PYTEST_CURRENT_TEST" not in os.environ
    return LiveDisplay(optuna_study, budget, workers) if live else Quiet()


def trials_table(rows: list[dict[str, Any]]) -> Table:
    """The trials (rows of :func:`workbench.search.tables.trials_table`) as a rich table: one
    row per trial, its runs' MLflow ids in full, one line per seed."""
    columns = [k for row in rows for k in row if not k.startswith("run_id/")]
    columns = list(dict.fromkeys(columns))
    table = Table(title="trials", title_justify="left")
    for name in columns:
        table.add_column(name, justify="right" if name in ("number", "value") else "left")
    lines = [_runs(row) for row in rows]
    width = max((len(line) for text in lines for line in text.splitlines()), default=4)
    table.add_column("runs", no_wrap=True, min_width=width)
    for row, runs in zip(rows, lines, strict=True):
        table.add_row(*(_cell(row.get(name)) for name in columns), runs)
    return table


def print_trials(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    """Prints :func:`trials_table` of ``rows`` no narrower than it needs (nothing cut)."""
    console = console or Console()
    table = trials_table(rows)
    width = console.measure(table, options=console.options.update_width(10_000)).maximum
    if width > console.width:
        console = Console(file=console.file, width=width, force_terminal=console.is_terminal)
    console.print(table)


def _runs(row: Mapping[str, Any]) -> str:
    runs = {k.removeprefix("run_id/"): v for k, v in row.items() if k.startswith("run_id/") and v}
    return "\n".join(f"{seed} {run_id}" for seed, run_id in runs.items())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
