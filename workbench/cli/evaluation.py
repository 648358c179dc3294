"""``wb eval``: few-shot evaluation of a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.app import HomeOption, TrackingOption, app, friendly, ints


@app.command("eval")
@friendly
def eval_command(
    run_or_checkpoint: Annotated[Path, typer.Argument(help="A run directory or checkpoint.")],
    task: Annotated[list[str], typer.Option(help="Registered tasks (repeatable).")],
    shots: Annotated[str, typer.Option(help="Comma-separated shot counts.")] = "0,4",
    data: Annotated[Path | None, typer.Option(help="Eval directory (default: the spec's).")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Demonstration seeds.")] = 3,
    subset: Annotated[int | None, typer.Option(min=1, help="Test examples.")] = None,
    demos: Annotated[str, typer.Option(help="random or rices.")] = "random",
    tracking_uri: TrackingOption = None,
    home: HomeOption = None,
) -> None:
    """Few-shot evaluation of a trained run, logged to its MLflow run as eval/<task>/<k>shot."""
    from workbench.runs import RunOptions, evaluate_checkpoint
    from workbench.spec import SpecError

    if demos not in ("random", "rices"):
        raise SpecError(f"--demos: {demos!r} is not random or rices")
    evaluate_checkpoint(
        run_or_checkpoint, task, ints(shots, "--shots"), data=data, trials=trials,
        subset=subset, demos=demos, options=RunOptions(home=home, tracking_uri=tracking_uri),
        say=typer.echo,
    )  # fmt: skip
