"""The ``wb`` command line: one module per command group, each command a thin call into the
library."""

from __future__ import annotations

import os

from workbench.cli import compare, data, evaluation, runs, studies  # noqa: F401  (add commands)
from workbench.cli.app import app
from workbench.cli.runs import ui_command

__all__ = ["app", "main", "ui_command"]


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one progress bar (ours) per run
    hf_logging.set_verbosity_error()
    app()
