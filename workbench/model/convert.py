"""Weights in the reference OpenFlamingo layout (``checkpoint.pt`` of a released model, or the
``state_dict()`` of an ``open_flamingo`` model) to and from the workbench model.

Key names differ in three places: the resampler (``perceiver.layers.i.0`` / ``.1.{0,1,3}`` vs
``resampler.layers.i.attn`` / ``.ff.{norm,fc1,fc2}``), the cross-attention blocks (kept by the
reference both on ``FlamingoLayer.gated_cross_attn_layer`` and in
``lang_encoder.gated_cross_attn_layers``) and the wrapped decoder layers (``decoder_layer`` and
``old_decoder_blocks`` vs ``layer``). The decoupled special-token rows are split out of, or
merged back into, the full embedding matrices. GPT-NeoX's head is ``embed_out`` in every
released checkpoint (written under transformers 4) and ``lm_head`` under transformers 5: both
load, and exports use the released name unless asked otherwise.

A checkpoint is a released ``checkpoint.pt`` (the reference's trimmed state dict: resampler,
cross-attention, every ``*embed*`` matrix, a tied head's alias) or a training checkpoint of the
reference's script (``{"model_state_dict": ..., "optimizer_state_dict": ...}``, ``module.``
prefixes under DDP). Shapes are checked against the model before anything loads.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from workbench.model.embeddings import SpecialTokenEmbedding, SpecialTokenHead
from workbench.model.flamingo import Flamingo
from workbench.model.lm import adapter_for


def _feed_forward(ref: str, ours: str) -> list[tuple[str, str]]:
    """The reference's ``nn.Sequential(LayerNorm, Linear, GELU, Linear)`` vs named layers."""
    return [
        (ref + ".0.{rest}", ours + ".norm.{rest}"),
        (ref + ".1.weight", ours + ".fc1.weight"),
        (ref + ".3.weight", ours + ".fc2.weight"),
    ]


#: The names of an LM's output head in reference checkpoints (GPT-NeoX: ``embed_out`` under
#: transformers 4, ``lm_head`` under 5); a checkpoint's head loads under either.
HEAD_NAMES = ("embed_out", "lm_head")
_REF_XATTN = "lang_encoder.{L}.{i}.gated_cross_attn_layer"
_OUR_XATTN = "lang_model.{L}.{i}.xattn"
# (reference template, workbench template); {L} is the LM's decoder-layer path, {i} a layer
# index, {rest} any suffix. Specific rules come first: the first match wins, in both directions.
_RULES = [
    ("vision_encoder.{rest}", "vision.visual.{rest}"),
    ("perceiver.latents", "resampler.latents"),
    ("perceiver.layers.{i}.0.{rest}", "resampler.layers.{i}.attn.{rest}"),
    *_feed_forward("perceiver.layers.{i}.1", "resampler.layers.{i}.ff"),
    ("perceiver.norm.{rest}", "resampler.norm.{rest}"),
    *_feed_forward(_REF_XATTN + ".ff", _OUR_XATTN + ".ff"),
    (_REF_XATTN + ".{rest}", _OUR_XATTN + ".{rest}"),
    ("lang_encoder.{L}.{i}.decoder_layer.{rest}", "lang_model.{L}.{i}.layer.{rest}"),
    ("lang_encoder.{rest}", "lang_model.{rest}"),
]
# The reference registers the same tensors under a second name; normalise those first.
_REFERENCE_ALIASES = [
    ("lang_encoder.gated_cross_attn_layers.{i}.{rest}", _REF_XATTN + ".{rest}"),
    ("lang_encoder.old_decoder_blocks.{i}.{rest}", "lang_encoder.{L}.{i}.decoder_layer.{rest}"),
]


@functools.cache  # a state dict renames thousands of keys against the same few rules
def _compile(template: str, layers_path: str) -> re.Pattern[str]:
    pattern = re.escape(template.replace("{L}", layers_path))
    pattern = pattern.replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{rest\}", r"(?P<rest>.+)")
    return re.compile(pattern + "$")


def _rename(key: str, rules: list[tuple[str, str]], layers_path: str) -> str | None:
    for source, target in rules:
        match = _compile(source, layers_path).match(key)
        if match:
            return target.replace("{L}", layers_path).format(**match.groupdict())
    return None


@dataclass
class LoadReport:
    """What a conversion loaded: keys of the workbench model, and reference keys not understood."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys the checkpoint did not cover
    missing_trainable: list[str] = field(default_factory=list)


def reference_state_dict(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The model weights of a released ``checkpoint.pt`` or of a reference training checkpoint
    (its ``model_state_dict``), without DDP's ``module.`` prefixes."""
    state = checkpoint
    if isinstance(checkpoint, Mapping) and "model_state_dict" in checkpoint:
        state = checkpoint["model_state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        keys = list(checkpoint)[:6] if isinstance(checkpoint, Mapping) else type(checkpoint)
        raise ValueError(
            "not an OpenFlamingo checkpoint: expected a state dict (name -> tensor) or a "
            f"training checkpoint with 'model_state_dict'; got {keys}"
        )
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_reference_state_dict(
    model: Flamingo, state_dict: Mapping[str, Any], strict: bool = False
) -> LoadReport:
    """Loads reference-layout weights into ``model``.

    Args:
        model: the workbench model (same backbones and ``xattn_every`` as the checkpoint).
        state_dict: a reference ``state_dict()``, a released ``checkpoint.pt``'s contents (only
            the trained weights; vision and LM weights then come from the backbones), or a
            reference training checkpoint.
        strict: also require every model weight to be covered.

    Output rows of special tokens that a checkpoint lacks (the reference never trains an untied
    head, so its checkpoints have none) start from the model's head rows, as the reference's do.

    Raises:
        KeyError: a key that maps to nothing in the model, or trained weights missing.
        ValueError: weights whose shapes differ from the model's (all of them named).
    """
    layers_path = adapter_for(model.lang_model).layers_path
    head = _head_attr(model)
    ours = model.state_dict()
    special = _special_modules(model)
    converted: dict[str, torch.Tensor] = {}
    unknown, wrong = [], []
    for key, value in reference_state_dict(state_dict).items():
        key = _rename(key, _REFERENCE_ALIASES, layers_path) or key
        target = _rename(_head_named(key, head), _RULES, layers_path)
        if target is None:
            unknown.append(key)
            continue
        module_path = target.removesuffix(".weight")
        if module_path in special and target.endswith(".weight"):
            # a full embedding / head matrix: frozen base rows + the trainable special rows
            expected = special[module_path].base.weight.shape
            if value.shape != expected:
                wrong.append(f"{key}: checkpoint {tuple(value.shape)}, model {tuple(expected)}")
                continue
            converted[f"{module_path}.base.weight"] = value
            converted[f"{module_path}.special"] = value[special[module_path].special_ids]
            continue
        if target not in ours:
            unknown.append(key)
        elif value.numel() != ours[target].numel():
            wrong.append(
                f"{key}: checkpoint {tuple(value.shape)}, model {tuple(ours[target].shape)}"
            )
        else:
            converted[target] = value.reshape(ours[target].shape)
    if unknown:
        raise KeyError(f"{len(unknown)} checkpoint keys match nothing in the model: {unknown[:8]}")
    if wrong:
        raise ValueError(f"{len(wrong)} checkpoint weights do not fit the model: {wrong[:8]}")
    _start_missing_output_rows(model, special, ours, converted)
    return _load_converted(model, ours, converted, strict)


def _start_missing_output_rows(
    model: Flamingo,
    special: dict[str, SpecialTokenEmbedding | SpecialTokenHead],
    ours: dict[str, torch.Tensor],
    converted: dict[str, torch.Tensor],
) -> None:
    """A head's special rows the checkpoint lacks: its input rows if tied, else its own."""
    embed = model.lang_model.get_input_embeddings()
    for path, module in special.items():
        if not isinstance(module, SpecialTokenHead) or f"{path}.special" in converted:
            continue
        if isinstance(embed, SpecialTokenEmbedding) and module.special is embed.special:
            inputs = next(p for p, m in special.items() if m is embed)
            converted[f"{path}.special"] = converted[f"{inputs}.special"]
        else:
            base = converted.get(f"{path}.base.weight", ours[f"{path}.base.weight"])
            converted[f"{path}.special"] = base[module.special_ids].clone()


def _load_converted(
    model: Flamingo, ours: dict[str, torch.Tensor], converted: dict[str, torch.Tensor],
    strict: bool,
) -> LoadReport:  # fmt: skip
    report = LoadReport(loaded=sorted(converted))
    report.missing = sorted(set(ours) - set(converted))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    report.missing_trainable = sorted(trainable - set(converted))
    if report.missing_trainable or (strict and report.missing):
        raise KeyError(
            f"checkpoint lacks {len(report.missing_trainable or report.missing)} weights, e.g. "
            f"{(report.missing_trainable or report.missing)[:8]}"
        )
    model.load_state_dict(converted, strict=False)
    return report


def load_reference_checkpoint(model: Flamingo, path: str | Path) -> LoadReport:
    """Loads a released OpenFlamingo ``checkpoint.pt`` (or a reference training checkpoint)
    into ``model``; nothing is unpickled but tensors and plain containers."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return load_reference_state_dict(model, torch.load(path, map_location="cpu", weights_only=True))


def export_reference_state_dict(
    model: Flamingo,
    trainable_only: bool = False,
    naming: Literal["released", "transformers5"] = "released",
) -> dict[str, torch.Tensor]:
    """The model's weights under the reference's key names.

    Args:
        trainable_only: a released ``checkpoint.pt``: the reference's training script's trimming
            (trained weights, every ``*embed*`` matrix, a tied head's alias; no vision encoder,
            no aliases), plus an untied head whose special rows this model trains (the
            reference, which loads such files non-strictly, then gets them too). Otherwise the
            reference model's complete ``state_dict()``, aliases included, so that its
            ``load_state_dict(strict=True)`` accepts it.
        naming: ``released`` names a GPT-NeoX head ``embed_out``, as the released checkpoints
            and a reference under transformers 4 do; ``transformers5`` keeps ``lm_head``.
    """
    layers_path = adapter_for(model.lang_model).layers_path
    head = _head_attr(model)
    released = adapter_for(model.lang_model).released_head if naming == "released" else None
    special = _special_modules(model)
    inverse = [(ours, ref) for ref, ours in _RULES]
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        owner = key.rsplit(".", 1)[0].removesuffix(".base")
        if owner in special:  # merge base + special rows back into one matrix
            if key != f"{owner}.base.weight":
                continue
            trains = special[owner].special.requires_grad
            key, value = f"{owner}.weight", special[owner].weight.detach()
        else:
            trains = key in trainable
        ref_key = _rename(key, inverse, layers_path)
        if ref_key is None:
            raise KeyError(f"no reference name for {key}")
        if released and head and ref_key.startswith(f"lang_encoder.{head}."):
            ref_key = ref_key.replace(f"lang_encoder.{head}.", f"lang_encoder.{released}.", 1)
        is_head = head is not None and owner == f"lang_model.{head}"
        if trainable_only and not (trains or "embed" in ref_key or (is_head and _tied(model))):
            continue
        out[ref_key] = value
    if trainable_only:
        return {k: v for k, v in out.items() if not k.startswith("vision_encoder.")}
    for key in list(out):
        for ref_alias, canonical in _REFERENCE_ALIASES:
            alias = _rename(key, [(canonical, ref_alias)], layers_path)
            if alias is not None:
                out[alias] = out[key]
    return out


def _head_attr(model: Flamingo) -> str | None:
    """The LM's attribute holding its output head (``lm_head``, ``embed_out``, ...)."""
    head = model.lang_model.get_output_embeddings()
    return next((n for n, m in model.lang_model.named_children() if m is head), None)


def _head_named(key: str, head: str | None) -> str:
    """``key`` with a head named either way (``embed_out`` / ``lm_head``) named as ours."""
    for name in HEAD_NAMES:
        prefix = f"lang_encoder.{name}."
        if head in HEAD_NAMES and key.startswith(prefix):
            return f"lang_encoder.{head}." + key.removeprefix(prefix)
    return key


def _tied(model: Flamingo) -> bool:
    embed, head = model.lang_model.get_input_embeddings(), model.lang_model.get_output_embeddings()
    if isinstance(embed, SpecialTokenEmbedding) and isinstance(head, SpecialTokenHead):
        return head.base.weight is embed.base.weight
    return head is not None and head.weight is embed.weight


def _special_modules(model: Flamingo) -> dict[str, SpecialTokenEmbedding | SpecialTokenHead]:
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, SpecialTokenEmbedding | SpecialTokenHead)
    }
