"""RunSpec: one run, as a frozen tree of typed dataclasses.

Component choices are registry names with their typed options (:class:`Choice`). Every leaf has
a dotted key (``model.xattn_every``, ``data.mixture.laion_batch_size``); ``flatten()`` gives the
same keys for every run (the MLflow params), ``override`` changes leaves by key with type checks,
and ``config_id`` hashes the canonical JSON without the seed, so the seeds of one configuration
share an id.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import workbench.data.filters
import workbench.data.mixture
import workbench.model.embeddings
import workbench.train.optim  # noqa: F401  (these imports fill the registries named below)
from workbench.data.laion import LaionOptions
from workbench.data.mmc4 import MMC4Options
from workbench.model.resampler import ResamplerOptions
from workbench.registry import REGISTRIES

# How a run executes, not what it computes: the training loop makes results independent of the
# number of processes, and recomputing activations or saving more often changes no number.
EXECUTION_KEYS = frozenset(
    {
        "train.strategy",
        "train.activation_checkpointing",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.log_every",
    }
)


class SpecError(ValueError):
    """An unknown key, a value of the wrong type, or an unknown component name."""


@dataclass(frozen=True)
class Choice:
    """A registered component (``kind``/``name``) and its options (the component's dataclass)."""

    kind: str
    name: str
    options: Any

    @classmethod
    def of(cls, kind: str, name: str, **options: Any) -> Choice:
        return cls(kind, name, REGISTRIES[kind].get(name)(**options))  # type: ignore[operator]


@dataclass(frozen=True)
class ModelSpec:
    vision: str = "wb-tiny-vit"  # open_clip name or config-JSON path
    vision_pretrained: str | None = None  # tag, checkpoint path, or None (random)
    lm: str = ""  # Hugging Face id or local directory
    tokenizer: str | None = None  # defaults to lm
    xattn_every: int = 1
    special_embeddings: str = "trainable"
    only_attend_immediate: bool = True
    resampler: str = "perceiver"
    resampler_options: ResamplerOptions = field(default_factory=ResamplerOptions)
    xattn_heads: int = 8
    xattn_dim_head: int = 64
    xattn_ff_mult: int = 4


@dataclass(frozen=True)
class DataSpec:
    laion_shards: str = ""  # brace pattern of webdataset shards
    mmc4_shards: str = ""
    mixture: Choice = field(default_factory=lambda: Choice.of("mixture", "paired"))
    mmc4_filter: Choice = field(
        default_factory=lambda: Choice.of("mmc4_filter", "similarity_threshold")
    )
    laion: LaionOptions = field(default_factory=LaionOptions)
    mmc4: MMC4Options = field(default_factory=MMC4Options)
    workers: int = 0  # dataloader workers per rank
    shuffle_buffer: int = 100


@dataclass(frozen=True)
class TrainSpec:
    steps: int = 1000  # optimizer steps
    lr: float = 1e-4
    weight_decay: float = 0.1  # on cross-attention parameters only
    schedule: Choice = field(default_factory=lambda: Choice.of("schedule", "constant"))
    grad_accum: int = 1
    clip_norm: float = 1.0
    precision: Literal["fp32", "bf16"] = "fp32"
    strategy: Literal["single", "ddp", "fsdp"] = "single"
    activation_checkpointing: bool = False
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10


@dataclass(frozen=True)
class EvalSpec:
    every: int = 0  # optimizer steps between evaluations (and one at step 0); 0 = never
    data: str = ""  # the evaluation directory (the shapes world writes <world>/eval)
    tasks: tuple[str, ...] = ()  # registered task names (wb list task)
    shots: tuple[int, ...] = (4,)
    subset: int = 200  # test examples per evaluation
    trials: int = 1  # demonstration seeds (the paper: 3)
    demos: Literal["random", "rices"] = "random"
    query_size: int = 2048  # the query set demonstrations are drawn from
    batch_size: int = 8


@dataclass(frozen=True)
class RunSpec:
    name: str = "run"
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)

    def flatten(self) -> dict[str, Any]:
        """Every leaf by dotted key; a choice gives its name under its own key."""
        return _flatten(self, "")

    def override(self, changes: Mapping[str, Any]) -> RunSpec:
        """A new spec with the leaves at ``changes``' keys replaced, checked against their types.

        A component name is applied before its options (``data.mixture`` then
        ``data.mixture.mmc4_probability``); a new name starts from that component's defaults.
        Strings are parsed for numeric, boolean and tuple fields (command-line values).
        """
        spec: Any = self
        for key in sorted(changes, key=lambda k: k.count(".")):
            spec = _set(spec, key.split("."), changes[key], key)
        _validate_names(spec)
        return typing.cast(RunSpec, spec)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace."""
        return json.dumps(self.flatten(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        return cls().override(json.loads(text))

    @property
    def config_id(self) -> str:
        """10 hex digits of the canonical JSON without the seed and the keys that change how a
        run executes but not what it computes (:data:`EXECUTION_KEYS`)."""
        flat = {
            k: v for k, v in self.flatten().items() if k != "train.seed" and k not in EXECUTION_KEYS
        }
        canonical = json.dumps(flat, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def _flatten(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, Choice):
        return {prefix: node.name, **_flatten(node.options, prefix)}
    if dataclasses.is_dataclass(node):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(node):
            out.update(_flatten(getattr(node, f.name), f"{prefix}.{f.name}" if prefix else f.name))
        return out
    return {prefix: list(node) if isinstance(node, tuple) else node}


def _keys(node: Any) -> list[str]:
    return sorted(_flatten(node, ""))


def _set(node: Any, path: list[str], value: Any, key: str) -> Any:
    head, rest = path[0], path[1:]
    if isinstance(node, Choice):  # a key inside a component's options
        return dataclasses.replace(node, options=_set(node.options, path, value, key))
    fields = {f.name: f for f in dataclasses.fields(node)}
    if head not in fields:
        raise _unknown(key, node)
    current = getattr(node, head)
    if rest:
        return dataclasses.replace(node, **{head: _set(current, rest, value, key)})
    if isinstance(current, Choice):
        registry = REGISTRIES[current.kind]
        if value not in registry:
            raise SpecError(f"{key}: unknown {current.kind} {value!r}; valid: {registry.names()}")
        return dataclasses.replace(node, **{head: Choice.of(current.kind, value)})
    hint = typing.get_type_hints(type(node))[head]
    return dataclasses.replace(node, **{head: _coerce(value, hint, key)})


def _unknown(key: str, node: Any) -> SpecError:
    valid = _keys(node)
    close = difflib.get_close_matches(
        key.rsplit(".", 1)[-1], [k.rsplit(".", 1)[-1] for k in valid], 3
    )
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return SpecError(f"unknown key {key!r}.{hint} Valid keys here: {', '.join(valid)}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise SpecError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if (value is None or value == "None") and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except SpecError:
                continue
        raise SpecError(f"{key}: {value!r} is not a {hint}")
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise SpecError(f"{key}: expected a tuple, got {value!r}")
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, args[0], key) for v in items)
    return _scalar(value, hint, key)


def _scalar(value: Any, hint: Any, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str and isinstance(value, str):
        return value
    raise SpecError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _validate_names(spec: RunSpec) -> None:
    """Plain-string component names that must be registered."""
    for key, kind, name in (
        ("model.special_embeddings", "special_embeddings", spec.model.special_embeddings),
        ("model.resampler", "resampler", spec.model.resampler),
    ):
        if name not in REGISTRIES[kind]:
            raise SpecError(f"{key}: unknown {kind} {name!r}; valid: {REGISTRIES[kind].names()}")
