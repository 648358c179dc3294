"""A cache of the frozen vision encoder's output tokens, shared by the runs of a study.

An image's tokens depend only on its preprocessed pixels and on the encoder, so they are stored
once and read back by every later run. The key is the SHA-256 of the image tensor as the encoder
receives it (after decoding, preprocessing and any flip: a random augmentation keys on its
outcome, so a flipped image is another entry, never a wrong one) and the autocast dtype it is
computed under; the directory is the encoder's fingerprint (its architecture, every weight and
their dtype), so another encoder never reads them.

Storage: safetensors shards under ``<root>/<fingerprint>/``, each written whole to a temporary
file and renamed into place, so concurrent writers (a study's workers, a job's ranks) never
leave or read a partial file, and two writers of one image only duplicate it. Shards are
memory-mapped (``safe_open``), not loaded whole; a process that misses rescans the directory
for the shards others wrote.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

SUFFIX = ".safetensors"


def image_key(image: torch.Tensor, salt: str = "") -> str:
    """The key of one preprocessed image: SHA-256 of its dtype, shape and bytes (and ``salt``:
    how it is computed, e.g. under bf16 autocast)."""
    data = image.detach().contiguous().cpu()
    digest = hashlib.sha256(f"{salt}{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.view(torch.uint8).numpy().data)  # the buffer itself, not a copy
    return digest.hexdigest()[:40]


def fingerprint(encoder: nn.Module) -> str:
    """What the encoder computes: its module tree, its weights (and buffers) and their dtypes."""
    digest = hashlib.sha256(repr(encoder).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        data = tensor.detach().contiguous().cpu()
        digest.update(f"{name}{data.dtype}{tuple(data.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().data)
    return digest.hexdigest()[:16]


class FeatureCache:
    """Encoder outputs by image key, in one encoder's directory.

    Args:
        folder: ``<root>/<fingerprint>`` (created).
        flush_every: new entries kept in memory before they are written as one shard (and at
            :meth:`flush`).
    """

    def __init__(self, folder: Path, flush_every: int = 256) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.flush_every = flush_every
        self._where: dict[str, str] = {}  # key -> shard file name
        self._shards: dict[str, Any] = {}  # shard file name -> open safe_open handle
        self._pending: dict[str, torch.Tensor] = {}
        self._listed: int | None = None  # the folder's mtime when last scanned
        self.hits = self.misses = 0

    def _scan(self) -> None:
        """Opens the shards written since the last scan; a rename into the folder changes its
        mtime, so a cold run's misses do not list the folder at every step (a shard renamed
        within the same mtime tick as a scan is at worst a miss, recomputed, until the next)."""
        listed = os.stat(self.folder).st_mtime_ns
        if listed == self._listed:
            return
        self._listed = listed
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            if path.name not in self._shards:
                handle = safe_open(str(path), framework="pt")
                self._shards[path.name] = handle
                names = handle.keys()  # a safe_open handle is not iterable itself
                for key in names:
                    self._where.setdefault(key, path.name)

    def get(self, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        """The stored tokens of those ``keys`` that are in the cache (counted as hits)."""
        if any(k not in self._where and k not in self._pending for k in keys):
            self._scan()
        found = {}
        for key in keys:
            if key in self._pending:
                found[key] = self._pending[key]
            elif key in self._where:
                found[key] = self._shards[self._where[key]].get_tensor(key)
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put(self, entries: dict[str, torch.Tensor]) -> None:
        """Adds freshly computed tokens; written once :attr:`flush_every` have gathered."""
        self._pending.update({k: v.detach().contiguous().cpu() for k, v in entries.items()})
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Writes the pending entries as one new shard (atomically: temporary file, rename)."""
        if not self._pending:
            return
        name = f"{uuid.uuid4().hex}{SUFFIX}"
        temporary = self.folder / f".{name}.tmp"
        save_file(self._pending, str(temporary))
        os.replace(temporary, self.folder / name)
        self._pending = {}
        self._scan()

    @property
    def hit_rate(self) -> float:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else 0.0


def encode_with_cache(cache: FeatureCache, encode: Any, images: torch.Tensor) -> torch.Tensor:
    """``encode(images)`` (N, V, D), the stored rows read back and only the others computed.
    Under autocast the entries are another set (keyed by its dtype): an fp32 run never reads
    tokens computed in bf16."""
    if len(images) == 0:
        return encode(images)
    device = images.device.type
    autocast = torch.is_autocast_enabled(device)
    salt = f"autocast-{torch.get_autocast_dtype(device)}" if autocast else ""
    keys = [image_key(image, salt) for image in images]
    found = cache.get(keys)
    missing = [i for i, key in enumerate(keys) if key not in found]
    fresh = encode(images[missing]) if missing else None
    if fresh is not None:
        cache.put({keys[i]: fresh[j] for j, i in enumerate(missing)})
        found.update({keys[i]: fresh[j] for j, i in enumerate(missing)})
    reference = fresh if fresh is not None else next(iter(found.values()))
    return torch.stack([found[k].to(images.device, reference.dtype) for k in keys])
