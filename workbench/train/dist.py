"""Where a process sits and what it can say to the others: the process group, collectives and
gradient synchronisation. With ``parallelize``, ``dcp`` and ``launch``, the only modules that
import ``torch.distributed``.

Strategies:

- ``single``: one process, CPU or one GPU; every collective here is the identity.
- ``ddp``: ``DistributedDataParallel`` (gradients all-reduced, parameters replicated).
- ``fsdp``: FSDP2 ``fully_shard`` per decoder block, resampler, vision encoder and root.

Processes are started by ``workbench.train.launch`` (which holds the rendezvous store, named in
``WB_STORE``) or by ``torchrun``; ``ddp``/``fsdp`` outside both form a group of one. CUDA uses
NCCL, the CPU gloo.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

STRATEGIES = ("single", "ddp", "fsdp")


@dataclass(frozen=True)
class Dist:
    """Where this process sits: its rank among ``world_size`` and its device."""

    strategy: str
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """A process group exists (``ddp``/``fsdp``), so collectives communicate."""
        return self.strategy != "single"


def init(strategy: str, device: str | None = None) -> Dist:
    """Joins (or, for ``ddp``/``fsdp`` outside a launcher, forms) the process group.

    Args:
        device: ``"cpu"``, ``"cuda"``; default CUDA when available.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {list(STRATEGIES)}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if strategy == "single" and world > 1:
        raise ValueError(f"strategy 'single' started with WORLD_SIZE={world}: use 'ddp' or 'fsdp'")
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device(kind)
    if strategy != "single" and not dist.is_initialized():
        backend = "nccl" if where.type == "cuda" else "gloo"
        device_id = where if where.type == "cuda" else None
        if "WB_STORE" in os.environ:  # the launcher's store, on the interface it chose
            host, _, port = os.environ["WB_STORE"].rpartition(":")
            store = dist.TCPStore(host, int(port), world, is_master=False)
            dist.init_process_group(
                backend, store=store, rank=rank, world_size=world, device_id=device_id
            )
        elif "MASTER_ADDR" in os.environ:  # torchrun's
            dist.init_process_group(backend, device_id=device_id)
        else:  # a group of one, outside a launcher: an in-memory store, no socket to listen on
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return Dist(strategy, rank, world, local_rank, where)


def shutdown(where: Dist) -> None:
    if where.active and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Backward passes inside reduce gradients across ranks only when ``enabled`` (the last
    micro-batch of an accumulated step)."""
    if isinstance(model, DistributedDataParallel) and not enabled:
        with model.no_sync():
            yield
        return
    set_sync = getattr(model, "set_requires_gradient_sync", None)  # an FSDP2 module
    if set_sync is not None:
        set_sync(enabled)
    yield


def all_reduce_sum(tensor: torch.Tensor, where: Dist) -> torch.Tensor:
    """Sum over ranks, in place."""
    if where.active and where.world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def first_values(params: Sequence[torch.Tensor], where: Dist) -> list[float]:
    """The first element of each parameter (the gates), read on every rank.

    A 1-element FSDP parameter lives on one rank, the others holding an empty shard, so the
    local parts are summed over ranks; a collective, so every rank must call it.
    """
    values = []
    sharded = any(isinstance(p, DTensor) for p in params)
    for p in params:
        local = p.to_local() if isinstance(p, DTensor) else p
        values.append(local.detach().reshape(-1)[:1].float().sum())
    if not values:
        return []
    stacked = torch.stack(values)
    if sharded:
        all_reduce_sum(stacked, where)
    return [float(v) for v in stacked.cpu()]


def clip_grad_norm(params: Sequence[torch.Tensor], max_norm: float) -> float:
    """Clips the global gradient norm (over every shard) to ``max_norm`` (0: no clipping);
    returns the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return float(norm)


def gather_objects(obj: object, where: Dist) -> list[object]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not (where.active and where.world_size > 1):
        return [obj]
    out: list[object] = [None] * where.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(where: Dist) -> None:
    if where.active and where.world_size > 1:
        dist.barrier()
