"""Starting the ranks of a run: ``torchrun`` running ``python -m workbench.train`` on one machine
or several, and reading rank 0's result back."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.spec import RunSpec, SpecError
from workbench.train.result import JobFailed, RunOptions, RunResult, run_dir


@dataclass(frozen=True)
class Processes:
    """How many processes run a job, and where they meet.

    One machine: a local rendezvous. Several: the same command on each machine with ``nnodes``
    and a shared ``rdzv_endpoint`` (host:port).
    """

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int | None = None
    rdzv_endpoint: str | None = None

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def check(self, spec: RunSpec) -> None:
        """Several processes need a data-parallel strategy."""
        if self.world_size > 1 and spec.train.strategy == "single":
            raise SpecError(
                "several processes need a data-parallel strategy: add --set "
                "train.strategy=fsdp (or ddp)"
            )

    def torchrun(self) -> list[str]:
        """The ``torchrun`` command line up to the program it runs."""
        command = [sys.executable, "-m", "torch.distributed.run",
                   f"--nproc-per-node={self.nproc_per_node}"]  # fmt: skip
        if self.nnodes > 1:
            if not self.rdzv_endpoint:
                raise SpecError("several nodes need --rdzv-endpoint host:port")
            command += [f"--nnodes={self.nnodes}", "--rdzv-backend=c10d",
                        f"--rdzv-endpoint={self.rdzv_endpoint}"]  # fmt: skip
            if self.node_rank is not None:
                command.append(f"--node-rank={self.node_rank}")
        elif self.rdzv_endpoint:
            command.append(f"--rdzv-endpoint={self.rdzv_endpoint}")
        else:
            command.append("--standalone")
        return command


def launch_job(
    spec: RunSpec, processes: Processes, options: RunOptions, home: Path, uri: str
) -> RunResult | None:
    """Trains ``spec`` as a torchrun job; the result on the machine of rank 0 (None elsewhere).

    Raises:
        JobFailed: the job failed (its exit code).
    """
    processes.check(spec)
    where = run_dir(spec, home)
    where.mkdir(parents=True, exist_ok=True)
    spec_file = where / "launch-spec.json"
    spec_file.write_text(spec.to_json())
    (where / "result.json").unlink(missing_ok=True)
    args = [str(spec_file), "--home", str(home), "--tracking-uri", uri]
    args += ["--experiment", options.experiment or spec.name]
    args += [f"--tag={k}={v}" for k, v in options.tags.items()]
    args += ["--resume"] * options.resume + ["--no-track"] * (not options.track)
    args += ["--no-progress"] * (not options.show_progress)
    logs = where / "logs" / time.strftime("%Y%m%d-%H%M%S")
    command = [*processes.torchrun(), f"--log-dir={logs}", "--redirects=3", "--tee=3",
               "-m", "workbench.train", *args]  # fmt: skip
    code, tail = _supervise(command)
    if code != 0:
        from workbench.track import close_running_runs

        # a rank killed outright cannot mark its run; rank 0's, if still RUNNING, ends FAILED
        with contextlib.suppress(Exception):
            close_running_runs(uri, {"run_dir": str(where.resolve())})
        raise JobFailed(_failure(code, tail, logs))
    result = where / "result.json"
    return RunResult.from_json(result.read_text()) if result.exists() else None


def die_with_parent() -> None:
    """Asks Linux to send this process SIGTERM when its parent dies (``prctl``'s
    PR_SET_PDEATHSIG), so that no rank outlives its launcher; nothing elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def _supervise(command: list[str]) -> tuple[int, list[str]]:
    """Runs torchrun (which dies with this process), passing its output through and keeping
    the last lines of its error stream; SIGTERM to this process stops the job first."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                               preexec_fn=die_with_parent)  # fmt: skip
    previous = signal.getsignal(signal.SIGTERM)

    def stop(signum: int, frame: Any) -> None:
        process.terminate()  # torchrun stops its ranks, which mark the run FAILED
        process.wait()
        raise SystemExit(128 + signum)

    is_main_thread = threading.current_thread() is threading.main_thread()
    if is_main_thread:
        signal.signal(signal.SIGTERM, stop)
    tail: deque[str] = deque(maxlen=400)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            sys.stderr.write(line)
            tail.append(line)
        return process.wait(), list(tail)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait()
        if is_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _failure(code: int, tail: list[str], logs: Path) -> str:
    """One line: the rank that failed first, its exit code (or signal) and its log file, from
    torchrun's summary of the failure; the job's exit code alone when there is none."""
    text = "".join(tail)
    cause = text[text.rfind("Root Cause") :] if "Root Cause" in text else ""
    rank = re.search(r"rank\s*:\s*(\d+) \(local_rank: (\d+)\)", cause)
    exit_code = re.search(r"exitcode\s*:\s*(-?\d+)", cause)
    if rank is None or exit_code is None:
        return f"the training job failed (torchrun exit code {code}); its logs: {logs}"
    value = int(exit_code.group(1))
    how = f"was killed by {signal.Signals(-value).name}" if value < 0 else f"exited with {value}"
    found = sorted(logs.glob(f"*/attempt_*/{rank.group(2)}/stderr.log"))
    log = found[-1] if found else logs
    return (
        f"rank {rank.group(1)} {how}; its log: {log}. The job stopped and its run is marked "
        "FAILED; `wb run ... --resume` continues from the last checkpoint"
    )
