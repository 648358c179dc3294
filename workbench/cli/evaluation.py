"""``wb eval``: few-shot evaluation of a trained run, or of a released OpenFlamingo model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.app import HomeOption, TrackingOption, app, friendly, ints


@app.command("eval")
@friendly
def eval_command(
    task: Annotated[list[str], typer.Option(help="Registered tasks (repeatable).")],
    run_or_checkpoint: Annotated[
        Path | None, typer.Argument(help="A run directory or checkpoint of the workbench.")
    ] = None,
    from_checkpoint: Annotated[
        Path | None, typer.Option(help="A released checkpoint.pt (with --preset).")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="Its model: wb list preset.")] = None,
    shots: Annotated[str, typer.Option(help="Comma-separated shot counts.")] = "0,4",
    data: Annotated[Path | None, typer.Option(help="Eval directory (default: the spec's).")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Demonstration seeds.")] = 3,
    subset: Annotated[int | None, typer.Option(min=1, help="Test examples.")] = None,
    demos: Annotated[str, typer.Option(help="random or rices.")] = "random",
    tracking_uri: TrackingOption = None,
    home: HomeOption = None,
) -> None:
    """Few-shot evaluation of a trained run, logged to its MLflow run as eval/<task>/<k>shot;
    or, with --from-checkpoint and --preset, of a released model on local benchmark files."""
    from workbench.runs import RunOptions, evaluate_checkpoint, evaluate_released
    from workbench.spec import SpecError

    if demos not in ("random", "rices"):
        raise SpecError(f"--demos: {demos!r} is not random or rices")
    if (run_or_checkpoint is None) == (from_checkpoint is None):
        raise SpecError("give a run directory or --from-checkpoint PATH --preset NAME: one of them")
    if from_checkpoint is not None:
        if preset is None or data is None:
            raise SpecError("--from-checkpoint needs --preset NAME and --data DIR")
        evaluate_released(
            from_checkpoint, preset, task, ints(shots, "--shots"), data=data, trials=trials,
            subset=subset, demos=demos, home=home, say=typer.echo,
        )  # fmt: skip
        return
    assert run_or_checkpoint is not None
    evaluate_checkpoint(
        run_or_checkpoint, task, ints(shots, "--shots"), data=data, trials=trials,
        subset=subset, demos=demos, options=RunOptions(home=home, tracking_uri=tracking_uri),
        say=typer.echo,
    )  # fmt: skip
