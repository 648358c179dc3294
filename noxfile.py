"""Developer sessions. They run in the environment nox is installed in (the project's .venv):
building a 5.6 GB torch environment per session would dwarf the sessions themselves.

    nox -s tests          # the unit tests (CPU; 2-process FSDP/DDP included)
    nox -s smoke          # `wb quickstart` end to end at a reduced size, into a temporary home
    nox -s parity         # logits/generation parity with open-flamingo 2.0.1
    nox -s lint typecheck
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "typecheck", "tests", "smoke", "parity"]

PYTHON = sys.executable  # the interpreter nox runs under: the project's environment
# The reference's generate() works with transformers <= 5.17 and its metadata pins torch 2.0.1,
# so it gets an overlay of its own (no second torch): these packages, installed with --target,
# shadow the project's transformers only inside the parity session.
PARITY_OVERLAY = Path(".nox/parity-overlay")
PARITY_PACKAGES = ["transformers==5.17.0"]
REFERENCE_PACKAGES = ["open-flamingo==2.0.1", "einops-exts==0.0.4", "einops==0.8.2"]
# The released checkpoints were written under transformers 4.x: tests/test_released.py builds
# the reference there too, in a subprocess on this overlay (transformers 4.57, the hub client
# and tokenizers it needs, the reference), again with the project's torch.
RELEASED_OVERLAY = Path(".nox/tf457-overlay")
RELEASED_PACKAGES = ["transformers==4.57.6", "huggingface-hub==0.36.2", "tokenizers==0.22.2"]


@nox.session
def tests(session: nox.Session) -> None:
    session.run(PYTHON, "-m", "pytest", *session.posargs)


@nox.session
def smoke(session: nox.Session) -> None:
    """The README's main job, reduced to 5 steps per run. The backbones are built in full, or,
    where ``$WB_TEST_BACKBONES`` names the cache the test session built (as in CI), found there
    by the same lookup a second quickstart makes."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wb-smoke-") as home:
        if os.environ.get("WB_TEST_BACKBONES"):
            Path(home, "backbones").symlink_to(Path(os.environ["WB_TEST_BACKBONES"]).resolve())
        session.run(
            str(Path(PYTHON).with_name("wb")), "quickstart", "--steps", "5", "--home", home,
            env={"HF_HUB_OFFLINE": "1"},
        )  # fmt: skip


@nox.session
def parity(session: nox.Session) -> None:
    for overlay, packages in ((PARITY_OVERLAY, PARITY_PACKAGES), (RELEASED_OVERLAY, None)):
        marker = overlay / ".complete"
        if marker.exists():
            continue
        pip = [PYTHON, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(overlay)]
        if packages is not None:
            session.run(*pip, *packages)
        else:  # exactly these, beside the project's own numpy, safetensors, ...
            session.run(*pip, "--no-deps", *RELEASED_PACKAGES)
        session.run(*pip, "--no-deps", *REFERENCE_PACKAGES)  # its torch==2.0.1 pin cannot apply
        marker.touch()
    env = {"PYTHONPATH": str(PARITY_OVERLAY.resolve()), "WB_REQUIRE_PARITY": "1"}
    session.run(PYTHON, "-m", "pytest", "-m", "parity", *session.posargs, env=env)
    if not session.posargs:  # the benchmarks against the reference, printed (not asserted)
        session.run(PYTHON, "benchmarks/cpu_step.py", "--quick", env=env)
        session.run(PYTHON, "benchmarks/attention.py", "--repeats", "3", env=env)
        session.run(PYTHON, "benchmarks/levers.py", "--repeats", "3", env=env)
        session.run(PYTHON, "benchmarks/gpu_throughput.py", "--dry-run", env=env)


@nox.session
def lint(session: nox.Session) -> None:
    session.run(PYTHON, "-m", "ruff", "check", ".")
    session.run(PYTHON, "-m", "ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.run(PYTHON, "-m", "mypy")
