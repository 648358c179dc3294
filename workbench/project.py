"""The user's project: the directory whose ``experiments/`` and ``ablations/`` the workbench
loads beside its own. They are Python files that run when loaded, so only the project the user
points to is read: ``--project DIR`` (or ``$WB_PROJECT``), else the nearest directory at or
above the working directory that holds a ``pyproject.toml``; never a bare working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench.spec import SpecError

#: The workbench checkout's own folders (present in an editable install).
CHECKOUT = Path(__file__).resolve().parents[1]


def project_root() -> Path | None:
    """The project directory, or None when the working directory is in none.

    Raises:
        SpecError: ``$WB_PROJECT`` (``--project``) is not a directory.
    """
    given = os.environ.get("WB_PROJECT")
    if given:
        root = Path(given).resolve()
        if not root.is_dir():
            raise SpecError(f"--project: {given} is not a directory")
        return root
    here = Path.cwd().resolve()
    return next((d for d in (here, *here.parents) if (d / "pyproject.toml").is_file()), None)


def project_folders(name: str) -> list[Path]:
    """``<project>/<name>`` and the checkout's ``<name>`` (once if they are the same)."""
    root = project_root()
    folders = [root / name] if root is not None else []
    return [*folders, CHECKOUT / name] if CHECKOUT / name not in folders else folders
