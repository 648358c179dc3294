"""Starting the ranks of a run: ``python -m workbench.train`` once per process, on one machine or
several, watched until they end, and rank 0's result read back.

The launcher, not a rank, holds the job's rendezvous store (a ``TCPStore`` on a socket it binds
itself): on one machine to the loopback interface only, on several to the address of the network
interface the user names, with the ranks' own connections (gloo, NCCL) on that interface too.
torchrun's stores listen on every interface, unauthenticated, for the life of the job.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.spec import RunSpec, SpecError
from workbench.train.result import JobFailed, RunOptions, RunResult, run_dir

#: How long the other ranks of a failed job get to mark their run FAILED before SIGKILL.
GRACE_S = 30.0


@dataclass(frozen=True)
class Processes:
    """How many processes run a job, and where they meet: on one machine, on loopback; on
    several, each runs the same command with ``nnodes``, its ``node_rank``, the ``rdzv_endpoint``
    (host:port of machine 0) and the network ``interface`` the machines reach each other on."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int | None = None
    rdzv_endpoint: str | None = None
    interface: str | None = None

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def check(self, spec: RunSpec) -> None:
        """Several processes need a data-parallel strategy; several machines, where to meet."""
        if self.world_size > 1 and spec.train.strategy == "single":
            raise SpecError(
                "several processes need a data-parallel strategy: add --set "
                "train.strategy=fsdp (or ddp)"
            )
        if self.nnodes > 1:
            if not self.rdzv_endpoint:
                raise SpecError("several machines need --rdzv-endpoint host:port (of machine 0)")
            if self.node_rank is None or not 0 <= self.node_rank < self.nnodes:
                raise SpecError(f"several machines need --node-rank R, 0 <= R < {self.nnodes}")
            if not self.interface:
                raise SpecError(
                    "several machines need --interface NAME: the network interface they reach "
                    "each other on (e.g. eth0); nothing listens on the others"
                )
        self.endpoint()  # a malformed endpoint (or, on one machine, an unknown interface) fails
        if self.nnodes > 1:
            interface_address(str(self.interface))

    def endpoint(self) -> tuple[str, int]:
        """Where the ranks find the store: machine 0's host and port (port 0: any free one)."""
        if self.nnodes == 1:
            port = _port(self.rdzv_endpoint) if self.rdzv_endpoint else 0
            return interface_address(self.interface or "lo"), port
        assert self.rdzv_endpoint is not None
        host = self.rdzv_endpoint.rpartition(":")[0].strip("[]")
        return host, _port(self.rdzv_endpoint)

    @property
    def hosts_store(self) -> bool:
        return self.nnodes == 1 or self.node_rank == 0


def _port(endpoint: str) -> int:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError(f"--rdzv-endpoint expects host:port, got {endpoint!r}")
    return int(port)


def interface_address(name: str) -> str:
    """The IPv4 address of network interface ``name`` (``lo``: 127.0.0.1)."""
    import psutil

    found = psutil.net_if_addrs()
    if name not in found:
        raise SpecError(
            f"no network interface {name!r} here; there are: {', '.join(sorted(found))}"
        )
    for address in found[name]:
        if address.family == socket.AF_INET:
            return str(address.address)
    raise SpecError(f"network interface {name!r} has no IPv4 address")


def launch_job(
    spec: RunSpec, processes: Processes, options: RunOptions, home: Path, uri: str
) -> RunResult | None:
    """Trains ``spec`` on this machine's ranks of ``processes``; the result on machine 0 (None
    elsewhere).

    Raises:
        JobFailed: a rank failed (which, how, and its log); its run is marked FAILED.
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
    logs.mkdir(parents=True, exist_ok=True)
    with rendezvous(processes) as (host, port):
        failure = _supervise([sys.executable, "-m", "workbench.train", *args],
                             _rank_env(processes, host, port), logs)  # fmt: skip
    if failure is not None:
        from workbench.track import close_running_runs

        # a rank killed outright cannot mark its run; rank 0's, if still RUNNING, ends FAILED
        with contextlib.suppress(Exception):
            close_running_runs(uri, {"run_dir": str(where.resolve())})
        raise JobFailed(failure)
    result = where / "result.json"
    return RunResult.from_json(result.read_text()) if result.exists() else None


@contextlib.contextmanager
def rendezvous(processes: Processes) -> Iterator[tuple[str, int]]:
    """The job's store, on machine 0 listening on ``processes``' interface address only (a
    socket bound here, handed to the store); where the ranks connect, while the job runs."""
    import torch.distributed as dist

    host, port = processes.endpoint()
    if not processes.hosts_store:
        yield host, port
        return
    bind = host if processes.nnodes == 1 else interface_address(str(processes.interface))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((bind, port))
    except OSError as error:
        listener.close()
        raise SpecError(
            f"cannot listen on {bind}:{port} for the job's rendezvous: {error}"
        ) from None
    listener.listen(socket.SOMAXCONN)
    port = listener.getsockname()[1]
    store = dist.TCPStore(
        bind, port, None, is_master=True, wait_for_workers=False, master_listen_fd=listener.detach()
    )  # the store owns the socket now
    try:
        yield host, port
    finally:
        del store


def _rank_env(processes: Processes, host: str, port: int) -> list[dict[str, str]]:
    """Each local rank's environment: its place in the job, the store, the interface."""
    node = processes.node_rank or 0
    interface = processes.interface or "lo"
    threads = max(1, (os.cpu_count() or 1) // processes.nproc_per_node)
    envs = []
    for local in range(processes.nproc_per_node):
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(threads))
        env.update({
            "RANK": str(node * processes.nproc_per_node + local), "LOCAL_RANK": str(local),
            "WORLD_SIZE": str(processes.world_size),
            "LOCAL_WORLD_SIZE": str(processes.nproc_per_node), "GROUP_RANK": str(node),
            "MASTER_ADDR": host, "MASTER_PORT": str(port), "WB_STORE": f"{host}:{port}",
            "GLOO_SOCKET_IFNAME": interface, "NCCL_SOCKET_IFNAME": interface,
        })  # fmt: skip
        envs.append(env)
    return envs


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


def _supervise(command: list[str], envs: list[dict[str, str]], logs: Path) -> str | None:
    """Runs the local ranks (which die with this process) until all end, each one's output
    into ``<logs>/rank-<R>.log`` and passed through; once one fails the others are stopped.
    None when all succeeded, else one line on the rank that failed first."""
    exits: queue.Queue[tuple[int, int]] = queue.Queue()
    ranks: dict[int, subprocess.Popen[bytes]] = {}
    threads = []

    def stop_all(signum: int = 0, frame: Any = None) -> None:
        for process in ranks.values():
            if process.poll() is None:
                process.terminate()  # each rank marks its run FAILED and exits
        deadline = time.monotonic() + GRACE_S
        for process in ranks.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if signum:
            raise SystemExit(128 + signum)

    is_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop_all) if is_main_thread else None
    first: tuple[int, int] | None = None
    try:
        for env in envs:
            rank = int(env["RANK"])
            log = logs / f"rank-{rank}.log"
            with open(log, "ab") as out:  # the rank writes its log itself: its output survives us
                ranks[rank] = subprocess.Popen(
                    command, env=env, stdout=out, stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                )  # fmt: skip
            threads.append(threading.Thread(target=_relay, args=(ranks[rank], rank, log, exits)))
            threads[-1].start()
        pending = len(ranks)
        while pending:
            try:
                rank, code = exits.get(timeout=1.0)
            except queue.Empty:
                continue
            pending -= 1
            if code != 0 and first is None:
                first = (rank, code)
                stop_all()
    finally:
        stop_all()
        for thread in threads:
            thread.join()
        if is_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return None if first is None else _failure(*first, logs / f"rank-{first[0]}.log")


def _relay(process: subprocess.Popen[bytes], rank: int, log: Path, exits: queue.Queue) -> None:
    """Follows a rank's log into this process's error stream (prefixed ``[rank R]`` but for
    rank 0) until the rank has ended, and reports its exit code as soon as it does."""
    prefix = f"[rank {rank}] " if rank else ""
    waiter = threading.Thread(target=lambda: exits.put((rank, process.wait())), daemon=True)
    waiter.start()
    partial = ""
    with open(log, errors="replace") as source:
        while True:
            ended = process.poll() is not None  # read after: nothing written before is missed
            text = partial + source.read()
            *lines, partial = text.split("\n")
            for line in lines:
                sys.stderr.write(f"{prefix}{line}\n")
            if ended:
                break
            time.sleep(0.1)
    if partial:
        sys.stderr.write(f"{prefix}{partial}\n")


def _failure(rank: int, code: int, log: Path) -> str:
    """One line: the rank, its exit code (or signal) and its log file, with the last line it
    wrote when it exited by itself."""
    if code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        lines: list[str] = []
        with contextlib.suppress(OSError), open(log, "rb") as file:
            file.seek(max(0, log.stat().st_size - 4096))
            lines = [x for x in file.read().decode(errors="replace").splitlines() if x.strip()]
        how = f"exited with {code}" + (f" ({lines[-1].strip()[:200]})" if lines else "")
    return (
        f"rank {rank} {how}; its log: {log}. The job stopped and its run is marked FAILED; "
        "`wb run ... --resume` continues from the last checkpoint"
    )
