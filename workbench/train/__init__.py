"""Training: building a run's objects, parallelising them, the step loop, metrics, checkpoints,
the optimizer and schedules, and launching ranks (``python -m workbench.train``)."""
