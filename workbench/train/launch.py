"""Starting the ranks of a run: ``torchrun`` running ``python -m workbench.train`` on one machine
or several, and reading rank 0's result back."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
    command = [*processes.torchrun(), "-m", "workbench.train", *args]
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        raise JobFailed(f"the training job failed (torchrun exit code {code}); see its log above")
    result = where / "result.json"
    return RunResult.from_json(result.read_text()) if result.exists() else None
