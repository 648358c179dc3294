"""Training: optimizer and schedules (the loop, parallelism and checkpoints come next)."""
