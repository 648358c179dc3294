"""``wb data shapes``, ``wb data stats`` and ``wb backbones build``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.app import HomeOption, backbones_app, data_app, emit, friendly


@data_app.command("shapes")
@friendly
def data_shapes(
    out: Annotated[Path, typer.Argument(help="Output directory.")],
    pairs: Annotated[int, typer.Option(min=0, help="LAION-style image-text pairs.")] = 2000,
    docs: Annotated[int, typer.Option(min=0, help="MMC4-style documents.")] = 1000,
    eval_items: Annotated[int, typer.Option("--eval", min=0, help="Evaluation items.")] = 200,
    seed: int = 0,
    image_size: Annotated[int, typer.Option(min=16)] = 64,
    per_shard: Annotated[int, typer.Option(min=1)] = 250,
) -> None:
    """Writes the shapes world: LAION and MMC4 shards in the reference formats, and eval sets."""
    from workbench.data.shapes import write_shapes_world
    from workbench.data.stream import shard_pattern

    started = time.perf_counter()
    shards = write_shapes_world(out, n_pairs=pairs, n_docs=docs, n_eval=eval_items, seed=seed,
                                image_size=image_size, per_shard=per_shard)  # fmt: skip
    for name, paths in shards.items():
        typer.echo(f"{name}: {len(paths)} shards  {shard_pattern(paths) if paths else ''}")
    typer.echo(f"wrote {out} in {time.perf_counter() - started:.1f} s")


@data_app.command("stats")
@friendly
def data_stats(
    shards: Annotated[str, typer.Argument(help="MMC4 shards: a brace pattern.")],
    thresholds: Annotated[str, typer.Option(help="Comma-separated.")] = "0.24,0.28,0.32",
    assignment: Annotated[str, typer.Option(help="one_to_one or best_sentence.")] = "one_to_one",
    min_image_bytes: Annotated[int, typer.Option(min=0)] = 0,
    plot: Annotated[Path | None, typer.Option(help="Also save a PNG plot here.")] = None,
    format: Annotated[str, typer.Option(help="table, markdown or csv.")] = "table",
) -> None:
    """What each MMC4 similarity threshold keeps: images, documents, images per document."""
    from workbench.data.stats import mmc4_threshold_table, plot_threshold_table
    from workbench.data.stream import expand_shards
    from workbench.spec import SpecError

    try:
        values = [float(t) for t in thresholds.split(",") if t.strip()]
    except ValueError:
        raise SpecError(
            f"--thresholds expects comma-separated numbers, got {thresholds!r}"
        ) from None
    missing = [p for p in expand_shards(shards) if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shards do not exist, e.g. {missing[0]}")
    table = mmc4_threshold_table(
        shards, values, assignment=assignment, min_image_bytes=min_image_bytes
    )
    emit(table, format, None)
    if plot is not None:
        typer.echo(f"plot: {plot_threshold_table(table, plot)}")


@backbones_app.command("build")
@friendly
def backbones_build(
    size: Annotated[str, typer.Option(help="tiny (about 3 min on 2 cores) or small.")] = "tiny",
    seed: int = 0,
    home: HomeOption = None,
) -> None:
    """Builds (or finds cached) the shapes CLIP and LM; prints where and how good they are."""
    from workbench.backbones.shapes import SIZES, build_shapes_backbones
    from workbench.spec import SpecError
    from workbench.train.result import home_dir

    if size not in SIZES:
        raise SpecError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    built = build_shapes_backbones(home_dir(home) / "backbones", size, seed)
    typer.echo(f"backbones: {built.root}")
    typer.echo(json.dumps(built.quality, indent=1))
