"""The store (creating it and its experiments under a lock) and the tracker of one run."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from filelock import FileLock
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_PARAM_CHARS = 6000
#: MLflow 3's kind of a model-training experiment (not GenAI); its UI (3.17) opens one on the
#: runs table when the URL says so too: ``#/experiments/<id>?workflowType=machine_learning``.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}

for _name in ("alembic", "mlflow.store.db.utils", "mlflow.system_metrics"):
    logging.getLogger(_name).setLevel(logging.WARNING)
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no "View run at" lines
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
    the working directory; an existing one keeps its location. Either is tagged with
    :data:`EXPERIMENT_KIND`. Called before any worker starts, so ranks never race to create them.
    """
    try:
        client = _client(uri)
        with _store_lock(uri):
            return _prepare(client, experiment, home)
    except TrackingError:
        raise
    except Exception as err:  # connection refused, bad URI, unreadable database
        raise TrackingError(
            f"cannot use the MLflow tracking store {uri}: {str(err).splitlines()[0][:200]}. "
            "Start the server, fix --tracking-uri, or leave it out for the local SQLite store"
        ) from None


def _store_lock(uri: str) -> Any:
    """A lock held while a process creates a local SQLite store's schema or an experiment:
    MLflow's schema migration fails when two processes run it at once on a new database. Other
    stores (a server, PostgreSQL) serialise creation themselves."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(database) + ".lock", timeout=300)


def _prepare(client: MlflowClient, experiment: str, home: Path) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = (Path(home).resolve() / "artifacts" / experiment).as_uri()
        try:
            return str(client.create_experiment(experiment, location, tags=EXPERIMENT_KIND))
        except mlflow.exceptions.MlflowException:  # created meanwhile by another process
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
    for key, value in EXPERIMENT_KIND.items():
        if key not in found.tags:  # created before the workbench tagged them, or by hand
            client.set_experiment_tag(found.experiment_id, key, value)
    return str(found.experiment_id)


def _client(uri: str) -> MlflowClient:
    """A client of ``uri``; a new SQLite store gets its "Default" experiment's artifacts beside
    the database (MLflow would put them in ``./mlruns`` of the working directory)."""
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        with _store_lock(uri):  # the first process creates the schema; the others wait for it
            if not database.exists():
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                artifacts = (database.parent.resolve() / "artifacts").as_uri()
                SqlAlchemyStore(uri, artifacts).engine.dispose()
    return MlflowClient(uri)


class NullTracker:
    """What ranks other than 0 (and runs without tracking) log to."""

    run_id: str | None = None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_text(self, text: str, name: str) -> None: ...
    def log_artifacts(self, paths: Sequence[Path], folder: str) -> None: ...
    def flush(self) -> None: ...
    def finish(self, status: str = "FINISHED") -> None: ...


class Tracker(NullTracker):
    """One MLflow run: started new, or continued (``run_id``) after a resume; metrics written
    every ``flush_every_s`` seconds, system metrics sampled every ``system_metrics_every_s``."""

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
        system_metrics_every_s: float = 10.0,
    ) -> None:
        self.client = _client(uri)
        if run_id is None:
            experiment_id = prepare(uri, experiment, home)
            texts = {k: str(v) for k, v in tags.items()}
            run = self.client.create_run(experiment_id, run_name=run_name, tags=texts)
            self.run_id = run.info.run_id
            params_list = [Param(k, _param(v)) for k, v in sorted(params.items())]
            for i in range(0, len(params_list), 100):
                self.client.log_batch(self.run_id, params=params_list[i : i + 100])
        else:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            self.set_tags(tags)
        # a resumed run recomputes the steps between its checkpoint and the crash exactly; the
        # ones already written stay, once (MLflow cannot delete a metric's points)
        self._written_until = self._last_steps() if run_id is not None else {}
        self._queued: list[Metric] = []  # logged, not yet written
        self._lock, self._writing = threading.Lock(), threading.Lock()
        self._error: BaseException | None = None
        self._stopped = threading.Event()
        threading.Thread(target=self._writer, args=(flush_every_s,), daemon=True).start()
        self._monitor = _system_metrics(uri, self.run_id, system_metrics_every_s, bool(run_id))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Queues ``metrics`` at ``step``; written in the background."""
        if self._error is not None:
            raise RuntimeError("MLflow could not write the run's metrics") from self._error
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()
                 if step > self._written_until.get(key, -1)]  # fmt: skip
        with self._lock:
            self._queued += batch

    def _last_steps(self) -> dict[str, int]:
        """The last step written of each of the run's metrics (not system metrics)."""
        keys = self.client.get_run(self.run_id).data.metrics  # type: ignore[arg-type]
        return {
            key: max(m.step for m in self.client.get_metric_history(self.run_id, key))  # type: ignore[arg-type]
            for key in keys
            if not key.startswith("system/")
        }

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if tags:
            self.client.log_batch(self.run_id, tags=_tags_list(tags))  # type: ignore[arg-type]

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)  # type: ignore[arg-type]

    def log_artifacts(self, paths: Sequence[Path], folder: str) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), folder)

    def flush(self) -> None:
        """Writes every metric queued so far before it returns (in ``log_batch`` calls of 1000)."""
        with self._writing:
            with self._lock:
                batch, self._queued = self._queued, []
            for i in range(0, len(batch), _BATCH):
                self.client.log_batch(self.run_id, metrics=batch[i : i + _BATCH])  # type: ignore[arg-type]
        if self._error is not None:
            raise RuntimeError("MLflow could not write the run's metrics") from self._error

    def finish(self, status: str = "FINISHED") -> None:
        self._stopped.set()
        try:
            self.flush()
        finally:
            if self._monitor is not None:
                self._monitor.finish()
            self.client.set_terminated(self.run_id, status=status)  # type: ignore[arg-type]

    def _writer(self, every_s: float) -> None:
        while not self._stopped.wait(every_s):
            try:
                self.flush()
            except BaseException as err:  # raised in the training loop by its next call
                self._error = err
                return


def _system_metrics(uri: str, run_id: str, every_s: float, resumed: bool) -> Any:
    """MLflow's monitor of ``system/...`` metrics (CPU, memory, disk, network, GPU), started
    for ``run_id``; None without ``psutil`` or with ``every_s`` 0."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    except ImportError:  # psutil is missing
        return None
    if every_s <= 0:
        return None
    monitor = SystemMetricsMonitor(run_id, every_s, resume_logging=resumed, tracking_uri=uri)
    monitor.start()
    return monitor


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _PARAM_CHARS else text[: _PARAM_CHARS - 3] + "..."


def _tags_list(tags: Mapping[str, Any]) -> list[RunTag]:
    return [RunTag(k, str(v)) for k, v in tags.items()]
