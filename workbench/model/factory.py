"""One call builds a model, its image processor and its tokenizer (the open_clip style)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from workbench.model.flamingo import Flamingo, FlamingoConfig
from workbench.model.vision import load_vision, offline
from workbench.model.xattn import check_xattn_every
from workbench.spec import ModelSpec, RunSpec, SpecError, spec_check

MEDIA_TOKEN = "<image>"
EOC_TOKEN = "<|endofchunk|>"
PAD_TOKEN = "<PAD>"


def create_model_and_transforms(
    vision: str,
    lm: str,
    *,
    vision_pretrained: str | None = None,
    tokenizer: str | None = None,
    dtype: torch.dtype = torch.float32,
    **options: Any,
) -> tuple[Flamingo, Any, PreTrainedTokenizerBase]:
    """Builds a Flamingo model from an open_clip vision model and a Hugging Face causal LM.

    Args:
        vision: open_clip model name, e.g. ``"ViT-L-14"`` or ``"wb-tiny-vit"``.
        lm: Hugging Face model id or local directory (``save_pretrained`` layout).
        vision_pretrained: open_clip pretrained tag or local checkpoint; None = random weights.
        tokenizer: tokenizer id or directory; defaults to ``lm``.
        dtype: dtype the LM weights are loaded in (the reference trains fp32 weights).
        **options: fields of :class:`FlamingoConfig` other than the token ids, e.g.
            ``xattn_every=2``, ``special_embeddings="frozen"``.

    Returns:
        (model, image processor, tokenizer with ``<image>``, ``<|endofchunk|>`` and a pad token).
    """
    allowed = {f.name for f in dataclasses.fields(FlamingoConfig)} - {
        "media_token_id",
        "eoc_token_id",
        "pad_token_id",
    }
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"unknown model option(s) {unknown}; valid: {sorted(allowed)}")

    vision_encoder, processor = load_vision(vision, vision_pretrained)
    text_tokenizer = load_tokenizer(tokenizer or lm)
    lang_model = load_lm(lm, dtype)
    embeddings = lang_model.get_input_embeddings()
    assert isinstance(embeddings, nn.Embedding), type(embeddings)
    vocab = embeddings.num_embeddings
    if len(text_tokenizer) != vocab:  # as the reference: padded vocabularies (MPT) shrink
        with _no_progress_bars():
            lang_model.resize_token_embeddings(len(text_tokenizer))

    config = FlamingoConfig(
        media_token_id=int(text_tokenizer.convert_tokens_to_ids(MEDIA_TOKEN)),  # type: ignore[arg-type]
        eoc_token_id=int(text_tokenizer.convert_tokens_to_ids(EOC_TOKEN)),  # type: ignore[arg-type]
        pad_token_id=int(text_tokenizer.pad_token_id),
        **options,
    )
    model = Flamingo(vision_encoder, lang_model, config)
    return model, processor, text_tokenizer


def create_model(
    spec: ModelSpec, dtype: torch.dtype = torch.float32
) -> tuple[Flamingo, Any, PreTrainedTokenizerBase]:
    """(model, image processor, tokenizer) as a spec's ``model`` section describes them; with
    ``init_from``, its weights start from that reference checkpoint (a released model)."""
    from workbench.model.convert import load_reference_checkpoint

    model, processor, tokenizer = create_model_and_transforms(
        spec.vision,
        spec.lm,
        vision_pretrained=spec.vision_pretrained,
        tokenizer=spec.tokenizer,
        dtype=dtype,
        **model_options(spec),
    )
    if spec.init_from:
        try:
            load_reference_checkpoint(model, spec.init_from)
        except (KeyError, ValueError) as err:
            raise SpecError(
                f"model.init_from: {spec.init_from} does not fit the model: {err}"
            ) from None
    return model, processor, tokenizer


def model_options(spec: ModelSpec) -> dict[str, Any]:
    """The :class:`FlamingoConfig` fields a ``ModelSpec`` sets: the fields of the same name,
    each component choice as its name (or options, for ``special_embeddings``)."""
    options: dict[str, Any] = {
        f.name: getattr(spec, f.name)
        for f in dataclasses.fields(FlamingoConfig)
        if hasattr(spec, f.name)
    }
    options["special_embeddings"] = spec.special_embeddings.options
    options["resampler"] = spec.resampler.name
    options["resampler_options"] = spec.resampler.options
    return options


@spec_check
def _xattn_every_fits_the_lm(spec: RunSpec) -> None:
    every = spec.model.xattn_every
    layers = lm_layer_count(spec.model.lm) if every != 1 else None
    try:
        check_xattn_every(every, layers)
    except ValueError as err:
        raise SpecError(f"model.{err}") from None


@spec_check
def _init_from_exists(spec: RunSpec) -> None:
    path = spec.model.init_from
    if path and not Path(path).is_file():
        raise SpecError(f"model.init_from: checkpoint {path} does not exist")


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A tokenizer with the Flamingo special tokens added (and ``<PAD>`` if it has no pad)."""
    tok = _from_hub(AutoTokenizer.from_pretrained, name_or_path, "tokenizer")
    tok.add_special_tokens({"additional_special_tokens": [EOC_TOKEN, MEDIA_TOKEN]})
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": PAD_TOKEN})
    return tok


@functools.lru_cache(maxsize=64)
def lm_layer_count(name_or_path: str) -> int | None:
    """The LM's decoder-layer count from its config alone; None when the config is not at hand
    (an uncached hub id offline)."""
    if not name_or_path:
        return None
    try:
        config = AutoConfig.from_pretrained(
            name_or_path, local_files_only=Path(name_or_path).exists() or offline()
        )
    except (OSError, ValueError):
        return None
    for attribute in ("num_hidden_layers", "n_layers", "n_layer", "num_layers"):
        count = getattr(config, attribute, None)
        if isinstance(count, int):
            return count
    return None


def load_lm(name_or_path: str, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """A causal LM loaded with ``AutoModelForCausalLM.from_pretrained`` (no remote code)."""
    load = AutoModelForCausalLM.from_pretrained
    return _from_hub(load, name_or_path, "language model", dtype=dtype)


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers draws a "Loading weights" bar on every load, and explains at every resize
    how it initialises the new rows; a run shows one bar (its own) and no such notes."""
    was, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if was:
            hf_logging.enable_progress_bar()


def _from_hub(load: Any, name_or_path: str, what: str, **kwargs: Any) -> Any:
    """``load(name_or_path)`` from a local directory or the local hub cache; from the hub only
    when it is reachable. Offline, a missing model fails at once with what to fetch."""
    local = Path(name_or_path).exists()
    if not local and name_or_path.startswith((".", "/", "~")):  # a path, not a hub id
        raise FileNotFoundError(f"{what} directory {name_or_path} does not exist")
    try:
        with _no_progress_bars():
            return load(name_or_path, local_files_only=local or offline(), **kwargs)
    except OSError as err:
        if local:
            raise OSError(f"cannot load the {what} in {name_or_path}: {err}") from None
        raise OSError(
            f"the {what} {name_or_path!r} is not in the local Hugging Face cache and cannot be "
            f"downloaded here. On a connected machine run `huggingface-cli download "
            f"{name_or_path} --local-dir DIR`, copy DIR here and pass its path instead"
        ) from None
