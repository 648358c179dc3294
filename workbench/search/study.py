"""The study definition, kept importable from here: it lives in :mod:`workbench.study`, outside
this package, so that loading the studies (``wb list``) never imports optuna."""

from workbench.study import (
    STUDIES,
    Study,
    budget,
    load_studies,
    study_from_json,
    study_json,
    study_variant,
)

__all__ = ["STUDIES", "Study", "budget", "load_studies", "study_from_json", "study_json",
           "study_variant"]  # fmt: skip
