"""The on-disk formats: LAION-style pairs and MMC4-style documents in webdataset tar shards.

LAION: one sample = ``jpg|png|jpeg`` (image bytes) + ``txt`` (caption) [+ ``json``].
MMC4: one sample = ``json`` holding a document with ``text_list``, ``similarity_matrix``
(images x sentences) and ``image_info[i].image_base64``: what the reference's MMC4 converter
writes (``{"__key__": uuid, "json": document}`` in ``%09d.tar`` shards).

Decoding never raises on bad data except :class:`BadRecord`, whose ``reason`` is the counter the
pipelines increment before moving on.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds
from PIL import Image

IMAGE_KEYS = ("jpg", "png", "jpeg")
_END_OF_ARCHIVE = 1024  # bytes: two zero blocks


class BadRecord(Exception):
    """A record that cannot be used; ``reason`` names the skip counter."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Dropped(Exception):
    """A valid record that the processing rules discard (counted, not an error)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Pair:
    key: str
    image: bytes
    caption: str


@dataclass(frozen=True)
class Document:
    key: str
    sentences: list[str]
    images: list[bytes | None]  # None where image_info has no image_base64
    similarity: np.ndarray  # (num images, num sentences)


def decode_image(data: bytes) -> Image.Image:
    """RGB image from encoded bytes; :class:`BadRecord` ``undecodable_image`` otherwise."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except Exception as err:  # PIL raises many types for corrupt data
        raise BadRecord("undecodable_image", str(err)) from None


def parse_pair(sample: dict[str, Any]) -> Pair:
    image = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
    if image is None or "txt" not in sample:
        raise BadRecord("missing_key", f"{sample.get('__key__')} has {sorted(sample)}")
    caption = sample["txt"]
    try:
        caption = caption.decode("utf-8") if isinstance(caption, bytes) else str(caption)
    except UnicodeDecodeError:
        raise BadRecord("malformed_text", str(sample.get("__key__"))) from None
    return Pair(str(sample.get("__key__")), image, caption)


def parse_document(sample: dict[str, Any]) -> Document:
    if "json" not in sample:
        raise BadRecord("missing_key", f"{sample.get('__key__')} has no json")
    try:
        doc = json.loads(sample["json"])
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRecord("malformed_json", str(err)) from None
    if not isinstance(doc, dict):
        raise BadRecord("malformed_json", "the document is not an object")
    missing = [k for k in ("text_list", "similarity_matrix", "image_info") if k not in doc]
    if missing:
        raise BadRecord("missing_key", f"{sample.get('__key__')} lacks {missing}")
    sentences, info = doc["text_list"], doc["image_info"]
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise BadRecord("malformed_json", "text_list is not a list of strings")
    if not isinstance(info, list) or not all(isinstance(i, dict) for i in info):
        raise BadRecord("malformed_json", "image_info is not a list of objects")
    expected = (len(info), len(sentences))
    try:
        similarity = np.asarray(doc["similarity_matrix"], dtype=np.float64)
    except (ValueError, TypeError):  # ragged or not numeric
        raise BadRecord("similarity_shape", f"not an {expected} matrix of numbers") from None
    if not info and similarity.size == 0:  # no images: ``[]`` is their (0, sentences) matrix
        similarity = similarity.reshape(expected)
    if similarity.shape != expected:
        raise BadRecord(
            "similarity_shape",
            f"expected {expected} (images x sentences), got {similarity.shape}",
        )
    images = []
    for item in info:
        encoded = item.get("image_base64")
        try:
            images.append(None if encoded is None else base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise BadRecord("undecodable_image", "invalid base64") from None
    return Document(str(sample.get("__key__")), sentences, images, similarity)


def document_json(
    sentences: list[str], images: list[bytes], similarity: np.ndarray, **extra: Any
) -> dict[str, Any]:
    """An MMC4 document as the reference's converter writes it (images base64-encoded)."""
    return {
        "text_list": sentences,
        "similarity_matrix": np.asarray(similarity).round(6).tolist(),
        "image_info": [
            {"image_name": f"{i}.png", "image_base64": base64.b64encode(b).decode("ascii")}
            for i, b in enumerate(images)
        ],
        **extra,
    }


def write_shards(
    samples: Iterable[dict[str, Any]], out_dir: str | Path, per_shard: int = 1000
) -> list[Path]:
    """Writes webdataset samples (``__key__`` + fields) to ``out_dir/%09d.tar``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # mtime fixed: the same samples give byte-identical shards
    with wds.ShardWriter(str(out / "%09d.tar"), maxcount=per_shard, verbose=0, mtime=0) as sink:
        for sample in samples:
            sink.write(sample)
    return sorted(out.glob("*.tar"))


def iter_tar(path: str | Path) -> Iterator[dict[str, Any]]:
    """Samples of one shard, files grouped by key (``a/b.jpg`` + ``a/b.txt`` -> one sample).

    A truncated or corrupt tar yields the sample it was reading (complete or not: parsing
    decides) and then raises :class:`BadRecord` (``truncated_tar`` / ``corrupt_tar``).
    """
    current: dict[str, Any] | None = None
    try:
        with open(path, "rb") as stream:
            for file in wds.tariterators.tar_file_iterator(stream):
                key, suffix = wds.tariterators.base_plus_ext(file["fname"])
                if key is None:
                    continue
                if current is None or key != current["__key__"]:
                    if current is not None:
                        yield current
                    current = {"__key__": key, "__url__": str(path)}
                current[suffix.lower()] = file["data"]
            # tarfile takes a file cut at a member boundary for a complete archive; a complete
            # one ends with two zero blocks
            stream.seek(max(stream.seek(0, io.SEEK_END) - _END_OF_ARCHIVE, 0))
            if stream.read() != bytes(_END_OF_ARCHIVE):
                raise EOFError("no end-of-archive marker")
    except (tarfile.ReadError, EOFError, OSError, ValueError) as err:
        reason = "truncated_tar" if isinstance(err, tarfile.ReadError | EOFError) else "corrupt_tar"
        if current is not None:
            yield current
        raise BadRecord(reason, f"{path}: {err}") from None
    if current is not None:
        yield current
