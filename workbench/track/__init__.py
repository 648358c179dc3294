"""Run tracking in MLflow: the only module that imports mlflow.

The default store is ``sqlite:///<home>/mlflow.db`` with artifacts in ``<home>/artifacts``; any
MLflow tracking URI (e.g. a server over PostgreSQL) works instead. Only rank 0 holds a
:class:`Tracker`; the others get :class:`NullTracker`.

Metrics are queued and written by a thread in batches, so logging costs the training loop a list
append, not a database round trip (MLflow's own asynchronous logging costs several times more:
``benchmarks/tracking_overhead.py``). Runs carry system metrics (``train.build`` sets MLflow's
standard tags).
"""

from workbench.track.core import (
    EXPERIMENT_KIND,
    NullTracker,
    Tracker,
    TrackingError,
    default_uri,
    prepare,
)
from workbench.track.runs import (
    close_running_runs,
    experiment_ids,
    interrupted_runs,
    latest_artifact,
    log_artifacts,
    log_metrics_to,
    metric_history,
    process_gone,
    search_runs,
    set_run_tags,
    study_parent_run,
)

__all__ = [
    "EXPERIMENT_KIND", "NullTracker", "Tracker", "TrackingError", "close_running_runs",
    "default_uri", "experiment_ids", "interrupted_runs", "latest_artifact", "log_artifacts",
    "log_metrics_to", "metric_history", "prepare", "process_gone", "search_runs", "set_run_tags",
    "study_parent_run",
]  # fmt: skip
