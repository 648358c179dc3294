"""Reading and amending tracked runs: their metric histories, the runs of an experiment, the
interrupted ones, a study's parent run, artifacts and tags after the fact."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric

from workbench.track.core import _client, _tags_list, prepare


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
        runs += [{"run_id": run.info.run_id, "run_name": run.info.run_name,
                  "status": run.info.status, "params": dict(run.data.params),
                  "tags": dict(run.data.tags), "metrics": dict(run.data.metrics)}
                 for run in page]  # fmt: skip
        token = page.token
        if not token:
            return runs


def interrupted_runs(uri: str, experiment: str) -> list[dict[str, Any]]:
    """The runs of ``experiment`` left RUNNING by a process of this machine that is gone (killed
    outright, it could not end its run): interrupted, not results."""
    runs = search_runs(uri, experiment, finished_only=False)
    return [
        run
        for run in runs
        if run["status"] == "RUNNING"
        and process_gone(run["tags"].get("host"), run["tags"].get("pid"))
    ]


def process_gone(host: Any, pid: Any) -> bool:
    """Whether process ``pid`` of machine ``host`` has ended: only a process of this machine
    can be known gone; a zombie (ended, never reaped) is gone too."""
    import psutil

    if host != socket.gethostname() or not str(pid or "").isdigit():
        return False
    try:
        return psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def experiment_ids(uri: str) -> dict[str, str]:
    """The experiments at ``uri``, name -> id, by name."""
    return dict(sorted((e.name, e.experiment_id) for e in _client(uri).search_experiments()))


def close_running_runs(
    uri: str,
    tags: Mapping[str, str],
    keep: Callable[[Any], bool] = lambda run: True,
    status: str = "FAILED",
) -> list[str]:
    """Ends as ``status`` every RUNNING run carrying ``tags`` that ``keep`` selects (a run whose
    process was killed cannot end itself); returns their ids."""
    client = _client(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    match = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
    closed = []
    for run in client.search_runs(experiments, f"{match} and attributes.status = 'RUNNING'"):
        if keep(run):
            client.set_terminated(run.info.run_id, status=status)
            closed.append(run.info.run_id)
    return closed


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


def latest_artifact(uri: str, run_id: str, folder: str, prefix: str, dst: Path) -> Path | None:
    """Downloads the last (by name) ``.parquet`` artifact of ``run_id`` in ``folder`` whose name
    starts with ``prefix`` into ``dst``; None when it has none."""
    client = _client(uri)
    paths = [a.path for a in client.list_artifacts(run_id, folder)]
    names = sorted(p for p in paths if Path(p).name.startswith(prefix) and p.endswith(".parquet"))
    if not names:
        return None
    quiet = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # no bar in the CLI's output
    try:
        return Path(client.download_artifacts(run_id, names[-1], str(dst)))
    finally:
        if quiet is None:
            del os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"]
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = quiet
