"""Run tracking in MLflow: the only module that imports mlflow.

The default store is ``sqlite:///<home>/mlflow.db`` with artifacts in ``<home>/artifacts``; any
MLflow tracking URI (e.g. a server over PostgreSQL) works instead. Only rank 0 holds a
:class:`Tracker`; the others get :class:`NullTracker`.

Metrics are queued and written by a background thread in batches (``log_batch``), so logging
costs the training loop a dictionary append, not a database round trip.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_PARAM_CHARS = 6000

logging.getLogger("alembic").setLevel(logging.WARNING)
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
# an unreachable server should fail in seconds, not after minutes of retries
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or used."""


def default_uri(home: Path) -> str:
    return f"sqlite:///{home.resolve() / 'mlflow.db'}"


def prepare(uri: str, experiment: str, home: Path) -> str:
    """Creates the store (if new) and the experiment (if missing); returns the experiment id.

    A new experiment keeps its artifacts in ``<home>/artifacts/<experiment>``, never relative to
    the working directory; an existing one keeps the location it was created with. Called once
    before any worker starts, so ranks never race to create them.
    """
    try:
        client = _client(uri)
        found = client.get_experiment_by_name(experiment)
    except Exception as err:  # connection refused, bad URI, unreadable database
        raise TrackingError(
            f"cannot use the MLflow tracking store {uri}: {str(err).splitlines()[0][:200]}. "
            "Start the server, fix --tracking-uri, or leave it out for the local SQLite store"
        ) from None
    if found is not None:
        return str(found.experiment_id)
    location = (Path(home).resolve() / "artifacts" / experiment).as_uri()
    try:
        return str(client.create_experiment(experiment, artifact_location=location))
    except mlflow.exceptions.MlflowException:  # created meanwhile by another process
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return str(found.experiment_id)


def _client(uri: str) -> MlflowClient:
    """A client of ``uri``; a new SQLite store is created with its "Default" experiment's
    artifacts beside the database (MLflow would put them in ``./mlruns`` of the working
    directory)."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        SqlAlchemyStore(uri, (database.parent.resolve() / "artifacts").as_uri()).engine.dispose()
    return MlflowClient(uri)


class NullTracker:
    """What ranks other than 0 (and runs without tracking) log to."""

    run_id: str | None = None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_text(self, text: str, name: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


class Tracker(NullTracker):
    """One MLflow run: started new, or continued (``run_id``) after a resume."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        *,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, Any],
        home: Path,
        run_id: str | None = None,
        flush_every_s: float = 2.0,
    ) -> None:
        self.client = _client(uri)
        if run_id is None:
            experiment_id = prepare(uri, experiment, home)
            run = self.client.create_run(experiment_id, run_name=run_name, tags=_tags(tags))
            self.run_id = run.info.run_id
            params_list = [Param(k, _param(v)) for k, v in sorted(params.items())]
            for i in range(0, len(params_list), 100):
                self.client.log_batch(self.run_id, params=params_list[i : i + 100])
        else:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            self.set_tags(tags)
        self._queue: queue.Queue[Metric | None] = queue.Queue()
        self._flushed = threading.Condition()
        self._pending = 0
        self._error: BaseException | None = None
        self._flush_every_s = flush_every_s
        self._thread = threading.Thread(target=self._writer, name="mlflow-writer", daemon=True)
        self._thread.start()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Queues ``metrics`` at ``step``; written in the background."""
        if self._error is not None:
            raise RuntimeError("the MLflow writer failed") from self._error
        now = int(time.time() * 1000)
        with self._flushed:
            self._pending += len(metrics)
        for key, value in metrics.items():
            self._queue.put(Metric(key, float(value), now, step))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if tags:
            self.client.log_batch(self.run_id, tags=_tags_list(tags))  # type: ignore[arg-type]

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)  # type: ignore[arg-type]

    def flush(self) -> None:
        """Blocks until every queued metric is written."""
        self._queue.put(None)
        with self._flushed:
            self._flushed.wait_for(lambda: self._pending == 0 or self._error is not None)
        if self._error is not None:
            raise RuntimeError("the MLflow writer failed") from self._error

    def finish(self, status: str = "FINISHED") -> None:
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status=status)  # type: ignore[arg-type]

    def _writer(self) -> None:
        batch: list[Metric] = []
        deadline = time.monotonic() + self._flush_every_s
        while True:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                item = None
            if item is not None:
                batch.append(item)
            if item is None or len(batch) >= _BATCH or time.monotonic() >= deadline:
                try:
                    for i in range(0, len(batch), _BATCH):
                        self.client.log_batch(self.run_id, metrics=batch[i : i + _BATCH])  # type: ignore[arg-type]
                except BaseException as err:  # surfaced to the training loop on its next call
                    self._error = err
                with self._flushed:
                    self._pending -= len(batch)
                    self._flushed.notify_all()
                batch = []
                deadline = time.monotonic() + self._flush_every_s


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _PARAM_CHARS else text[: _PARAM_CHARS - 3] + "..."


def _tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in tags.items()}


def _tags_list(tags: Mapping[str, Any]) -> list[RunTag]:
    return [RunTag(k, str(v)) for k, v in tags.items()]


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of one metric, by step; a step logged twice (before a crash and after its
    resume) gives its latest value."""
    values: dict[int, tuple[int, float]] = {}
    for m in _client(uri).get_metric_history(run_id, key):
        if m.step not in values or m.timestamp >= values[m.step][0]:
            values[m.step] = (m.timestamp, m.value)
    return [(step, values[step][1]) for step in sorted(values)]


def search_runs(uri: str, experiment: str, finished_only: bool = True) -> list[dict[str, Any]]:
    """Every run of ``experiment`` as plain data (run_id, name, status, params, tags, metrics);
    an unknown experiment gives no runs."""
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs: list[dict[str, Any]] = []
    token = None
    query = "attributes.status = 'FINISHED'" if finished_only else ""
    while True:
        page = client.search_runs([found.experiment_id], query, max_results=1000, page_token=token)
        for run in page:
            runs.append(
                {
                    "run_id": run.info.run_id,
                    "run_name": run.info.run_name,
                    "status": run.info.status,
                    "params": dict(run.data.params),
                    "tags": dict(run.data.tags),
                    "metrics": dict(run.data.metrics),
                }
            )
        token = page.token
        if not token:
            return runs


def experiment_names(uri: str) -> list[str]:
    return sorted(e.name for e in _client(uri).search_experiments())


def log_metrics_to(uri: str, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    """Adds metrics to an existing (finished) run, e.g. an evaluation after training."""
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    _client(uri).log_batch(run_id, metrics=batch)


def study_parent_run(
    uri: str, experiment: str, study: str, optuna_study_id: int, home: Path
) -> str:
    """The MLflow parent run of a study (created on first use, its experiment's artifacts under
    ``home``); child runs point to it with the ``mlflow.parentRunId`` tag."""
    experiment_id = prepare(uri, experiment, home)
    client = _client(uri)
    found = client.search_runs(
        [experiment_id], f"tags.study = '{study}' and tags.study_parent = 'true'", max_results=1
    )
    if found:
        return str(found[0].info.run_id)
    run = client.create_run(
        experiment_id,
        run_name=f"study-{study}",
        tags={"study": study, "study_parent": "true", "optuna.study_id": str(optuna_study_id)},
    )
    return str(run.info.run_id)


def log_artifacts(uri: str, run_id: str, paths: list[Path], folder: str) -> None:
    client = _client(uri)
    for path in paths:
        client.log_artifact(run_id, str(path), folder)


def set_run_tags(uri: str, run_id: str, tags: Mapping[str, Any]) -> None:
    _client(uri).log_batch(run_id, tags=_tags_list(tags))
