"""RunSpec: one run, as a frozen tree of typed dataclasses.

Component choices are registry names with their typed options (:class:`Choice`). Every leaf has
a dotted key (``model.xattn_every``, ``data.mixture.laion_batch_size``); ``flatten()`` gives the
same keys for every run (the MLflow params), ``override`` changes leaves by key with type checks,
and ``config_id`` hashes the canonical JSON without the seed, so the seeds of one configuration
share an id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from workbench.registry import registry
from workbench.spec_keys import EXECUTION_KEYS, LATER_DEFAULTS, LATER_KEYS


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
        """The component ``name`` of ``kind`` with ``options`` (the rest at their defaults).

        A registered component is either its own options dataclass (a mixture, a schedule) or
        names one as ``options_type`` (a resampler module).
        """
        component: Any = registry(kind).get(name)
        make = getattr(component, "options_type", component)
        return cls(kind, name, make(**options))


def _default(kind: str, name: str) -> Callable[[], Choice]:
    """A dataclass ``default_factory``: the component ``name`` at its defaults."""
    return lambda: Choice.of(kind, name)


@dataclass(frozen=True)
class LaionOptions:
    """How LAION pairs become examples."""

    max_tokens: int = 32
    hflip_prob: float = 0.5  # the reference flips; the shapes world must not (left/right)


@dataclass(frozen=True)
class MMC4Options:
    """How MMC4 documents become examples (the image filter is ``data.mmc4_filter``)."""

    max_tokens: int = 256
    max_images: int = 6
    min_images: int = 1
    single_image_keep_prob: float = 0.5
    min_image_bytes: int = 11_000  # the reference drops images of 10 kB or less
    hflip_prob: float = 0.5


@dataclass(frozen=True)
class ModelSpec:
    vision: str = "wb-tiny-vit"  # open_clip name or config-JSON path
    vision_pretrained: str | None = None  # tag, checkpoint path, or None (random)
    lm: str = ""  # Hugging Face id or local directory
    tokenizer: str | None = None  # defaults to lm
    xattn_every: int = 1
    special_embeddings: Choice = field(default_factory=_default("special_embeddings", "trainable"))
    only_attend_immediate: bool = True
    resampler: Choice = field(default_factory=_default("resampler", "perceiver"))
    xattn_heads: int = 8
    xattn_dim_head: int = 64
    xattn_ff_mult: int = 4
    init_from: str | None = None  # a released checkpoint.pt (or reference training checkpoint)


@dataclass(frozen=True)
class DataSpec:
    laion_shards: str = ""  # brace pattern of webdataset shards
    mmc4_shards: str = ""
    mixture: Choice = field(default_factory=_default("mixture", "paired"))
    mmc4_filter: Choice = field(default_factory=_default("mmc4_filter", "similarity_threshold"))
    laion: LaionOptions = field(default_factory=LaionOptions)
    mmc4: MMC4Options = field(default_factory=MMC4Options)
    workers: int = 0  # dataloader workers per rank
    shuffle_buffer: int = 100


@dataclass(frozen=True)
class TrainSpec:
    steps: int = 1000  # optimizer steps
    lr: float = 1e-4
    weight_decay: float = 0.1  # on cross-attention parameters only
    schedule: Choice = field(default_factory=_default("schedule", "constant"))
    grad_accum: int = 1
    clip_norm: float = 1.0  # 0: no clipping
    precision: Literal["fp32", "bf16"] = "fp32"
    strategy: Literal["single", "ddp", "fsdp"] = "single"
    activation_checkpointing: bool = False
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    feature_cache: bool = True  # reuse the frozen encoder's outputs (<home>/features)
    compile: bool = False  # torch.compile the decoder blocks and the resampler


@dataclass(frozen=True)
class EvalSpec:
    every: int = 0  # optimizer steps between evaluations (and one at step 0); 0 = never
    at_start: bool = True  # the evaluation at step 0 (the untrained model)
    data: str = ""  # the evaluation directory (the shapes world writes <world>/eval)
    tasks: tuple[str, ...] = ()  # registered task names (wb list task)
    validation: str = ""  # held-out laion/ and mmc4/ shards (val/loss/*); the world's validation/
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
        for check in CHECKS:
            check(spec)
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
        flat = self.flatten()
        unset = {k for k in LATER_KEYS if flat.get(k) in (None, "")}
        unset |= {k for k, default in LATER_DEFAULTS.items() if flat.get(k) == default}
        skip = EXECUTION_KEYS | {"train.seed"} | unset
        flat = {k: v for k, v in flat.items() if k not in skip}
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
        return dataclasses.replace(node, **{head: _new_choice(current.kind, value, key)})
    hint = typing.get_type_hints(type(node))[head]
    return dataclasses.replace(node, **{head: _coerce(value, hint, key)})


def _unknown(key: str, node: Any) -> SpecError:
    valid = _keys(node)
    last = [k.rsplit(".", 1)[-1] for k in valid]  # suggest whole keys: seed -> train.seed
    leaves = set(difflib.get_close_matches(key.rsplit(".", 1)[-1], last, 3))
    close = [k for k, leaf in zip(valid, last, strict=True) if leaf in leaves][:3]
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
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None:
            if not math.isfinite(number):
                raise SpecError(f"{key}: must be a finite number, got {value!r}")
            return number
    elif hint is str and isinstance(value, str):
        return value
    raise SpecError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _new_choice(kind: str, value: Any, key: str) -> Choice:
    """A component by name (at its defaults), or a whole :class:`Choice` of the same kind."""
    if isinstance(value, Choice):
        if value.kind != kind:
            raise SpecError(f"{key}: expected a {kind} component, got a {value.kind}")
        return value
    components = registry(kind)
    if value not in components:
        raise SpecError(f"{key}: unknown {kind} {value!r}; valid: {components.names()}")
    return Choice.of(kind, value)


#: Rules a whole spec must satisfy, run by every :meth:`RunSpec.override` (so by ``--set``,
#: ``--ablate`` and the Python API alike); the components that know a rule add it with
#: :func:`spec_check`. A rule raises :class:`SpecError`.
CHECKS: list[Callable[[RunSpec], None]] = []


def spec_check(rule: Callable[[RunSpec], None]) -> Callable[[RunSpec], None]:
    """Decorator adding ``rule`` to :data:`CHECKS`."""
    CHECKS.append(rule)
    return rule
