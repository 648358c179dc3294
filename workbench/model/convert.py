"""Weights in the reference OpenFlamingo layout (``checkpoint.pt`` of a released model, or the
``state_dict()`` of an ``open_flamingo`` model) to and from the workbench model.

Key names differ in three places: the resampler (``perceiver.layers.i.0`` / ``.1.{0,1,3}`` vs
``resampler.layers.i.attn`` / ``.ff.{norm,fc1,fc2}``), the cross-attention blocks (kept by the
reference both on ``FlamingoLayer.gated_cross_attn_layer`` and in
``lang_encoder.gated_cross_attn_layers``) and the wrapped decoder layers (``decoder_layer`` and
``old_decoder_blocks`` vs ``layer``). The decoupled special-token rows are split out of, or
merged back into, the full embedding matrices.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

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


def load_reference_state_dict(
    model: Flamingo, state_dict: dict[str, torch.Tensor], strict: bool = False
) -> LoadReport:
    """Loads reference-layout weights into ``model``.

    Args:
        model: the workbench model (same backbones and ``xattn_every`` as the checkpoint).
        state_dict: a reference ``state_dict()`` or released ``checkpoint.pt`` contents (which
            hold only the trained weights; vision and LM weights then come from the backbones).
        strict: also require every model weight to be covered.

    Raises:
        KeyError: a key that maps to nothing in the model, or (always) trained weights missing.
    """
    layers_path = adapter_for(model.lang_model).layers_path
    ours = model.state_dict()
    special = _special_modules(model)
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        key = key.removeprefix("module.")  # checkpoints saved from DDP
        key = _rename(key, _REFERENCE_ALIASES, layers_path) or key
        target = _rename(key, _RULES, layers_path)
        if target is None:
            unknown.append(key)
            continue
        module_path = target.removesuffix(".weight")
        if module_path in special and target.endswith(".weight"):
            # a full embedding / head matrix: frozen base rows + the trainable special rows
            converted[f"{module_path}.base.weight"] = value
            converted[f"{module_path}.special"] = value[special[module_path].special_ids]
            continue
        if target not in ours:
            unknown.append(key)
            continue
        converted[target] = value.reshape(ours[target].shape)
    if unknown:
        raise KeyError(f"{len(unknown)} checkpoint keys match nothing in the model: {unknown[:8]}")

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
    """Loads a released OpenFlamingo ``checkpoint.pt`` into ``model``."""
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    return load_reference_state_dict(model, state_dict)


def export_reference_state_dict(
    model: Flamingo, trainable_only: bool = False
) -> dict[str, torch.Tensor]:
    """The model's weights under the reference's key names.

    Args:
        trainable_only: like a released ``checkpoint.pt`` (resampler, cross-attention and
            embedding matrices); otherwise the reference model's complete ``state_dict()``,
            aliases included, so that its ``load_state_dict(strict=True)`` accepts it.
    """
    layers_path = adapter_for(model.lang_model).layers_path
    special = _special_modules(model)
    inverse = [(ours, ref) for ref, ours in _RULES]
    out: dict[str, torch.Tensor] = {}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    for key, value in model.state_dict().items():
        module_path = key.rsplit(".", 1)[0]
        owner = module_path.removesuffix(".base")
        if owner in special:  # merge base + special rows back into one matrix
            if key != f"{owner}.base.weight":
                continue
            key, value = f"{owner}.weight", special[owner].weight.detach()
        elif trainable_only and key not in trainable and "embed" not in key:
            continue
        ref_key = _rename(key, inverse, layers_path)
        if ref_key is None:
            raise KeyError(f"no reference name for {key}")
        out[ref_key] = value
    if not trainable_only:
        for key in list(out):
            for ref_alias, canonical in _REFERENCE_ALIASES:
                alias = _rename(key, [(canonical, ref_alias)], layers_path)
                if alias is not None:
                    out[alias] = out[key]
    if trainable_only:
        out = {k: v for k, v in out.items() if not k.startswith("vision_encoder.")}
    return out


def _special_modules(model: Flamingo) -> dict[str, SpecialTokenEmbedding | SpecialTokenHead]:
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, SpecialTokenEmbedding | SpecialTokenHead)
    }
