"""The ``wb`` command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Flamingo Workbench.")


def _home(home: Path | None) -> Path:
    return home or Path(os.environ.get("WB_HOME", "wb-runs"))


@app.command("list")
def list_components(
    kind: Annotated[str | None, typer.Argument(help="Only this kind, e.g. 'lm'.")] = None,
) -> None:
    """Lists every registered component kind and its names."""
    import workbench.model
    import workbench.spec  # noqa: F401  (these imports register the components)
    from workbench.registry import REGISTRIES

    if kind is not None and kind not in REGISTRIES:
        typer.echo(
            f"error: unknown kind {kind!r}. Known: {', '.join(sorted(REGISTRIES))}", err=True
        )
        raise typer.Exit(2)
    for name in sorted(REGISTRIES) if kind is None else [kind]:
        typer.echo(f"{name}: {', '.join(REGISTRIES[name].names())}")


@app.command()
def demo(
    family: Annotated[str, typer.Option(help="LM family of the tiny random model.")] = "llama",
    home: Annotated[Path | None, typer.Option(help="Working directory (default $WB_HOME).")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 12,
) -> None:
    """Builds a tiny random Flamingo (saved and loaded like real weights) and generates."""
    import torch
    from PIL import Image
    from transformers.utils import logging as hf_logging

    from workbench.model import create_model_and_transforms
    from workbench.model.lm import LM_ADAPTERS
    from workbench.model.tiny import save_tiny_lm

    if family not in LM_ADAPTERS:
        typer.echo(f"error: unknown family {family!r}. Known: {', '.join(LM_ADAPTERS.names())}")
        raise typer.Exit(2)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    lm_dir = save_tiny_lm(family, _home(home) / "tiny" / family)
    torch.manual_seed(0)
    model, processor, tokenizer = create_model_and_transforms("wb-tiny-vit", str(lm_dir))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    typer.echo(f"model: wb-tiny-vit + tiny {family} from {lm_dir}")
    typer.echo(f"parameters: {total:,} ({trainable:,} trainable)")

    pictures = [Image.new("RGB", (48, 48), colour) for colour in ("red", "blue")]
    images = torch.stack([processor(p) for p in pictures])[None]  # (1, 2, 3, H, W)
    prompt = "<image>Output: a red square.<|endofchunk|><image>Output:"
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids
    out = model.eval().generate(images, None, input_ids, max_new_tokens=max_new_tokens)
    typer.echo(f"prompt: {prompt}")
    new_tokens = tokenizer.decode(out[0, input_ids.shape[1] :])
    typer.echo(f"generated (untrained weights, so arbitrary text): {new_tokens!r}")


def main() -> None:
    app()
