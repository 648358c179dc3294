"""Optuna studies of ablation axes: the only package that imports optuna.

A :class:`Study` (defined in ``ablations/studies.py``, registered by :func:`load_studies`; both
live in :mod:`workbench.study`, which imports no optuna, and are re-exported here) names
a base experiment, the axes it searches, the objective, the seeds every configuration runs with,
and a budget. ``run_study`` turns it into an Optuna study in a storage shared by every worker (a
journal file beside the MLflow database by default, or an RDB URL such as PostgreSQL) and one
MLflow parent run, with a child run per (trial, seed).

- Grids are enqueued cell by cell (the baseline first); workers pop waiting trials from the
  storage atomically, so parallel workers never run a cell twice.
- Continuous or mixed spaces use TPE.
- A trial whose worker died is marked FAIL, not lost: on RDB storage by Optuna's heartbeat, on
  a journal file by the next worker, which finds the RUNNING trial's process gone.

``storage`` (opening the Optuna study, the settings it runs with), ``objective`` (a trial's
runs), ``parent`` (the MLflow parent run's life), ``worker`` (the worker loop and
``run_study``), ``display`` (the live view and the final table), ``tables`` (trials, Pareto
front, importance), ``reporting`` (``wb report``); ``study`` re-exports :mod:`workbench.study`.
"""

import optuna

from workbench.search.display import print_trials
from workbench.search.objective import objective_for
from workbench.search.reporting import report_study
from workbench.search.storage import open_study, record_settings, storage_for
from workbench.search.tables import importance, pareto_front, trials_table
from workbench.search.worker import WORKER, run_study, work, worker_main
from workbench.study import (
    STUDIES,
    Study,
    budget,
    load_studies,
    study_from_json,
    study_json,
    study_variant,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

__all__ = [
    "STUDIES",
    "WORKER",
    "Study",
    "budget",
    "importance",
    "load_studies",
    "objective_for",
    "open_study",
    "pareto_front",
    "print_trials",
    "record_settings",
    "report_study",
    "run_study",
    "storage_for",
    "study_from_json",
    "study_json",
    "study_variant",
    "trials_table",
    "work",
    "worker_main",
]
