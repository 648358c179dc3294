"""The ``wb`` application, its command groups, and what every command shares: the options, and
turning a user's mistake into one line and exit code 2."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Flamingo Workbench.")
data_app = typer.Typer(no_args_is_help=True, help="Write and inspect datasets.")
backbones_app = typer.Typer(no_args_is_help=True, help="The shapes world's pretrained backbones.")
app.add_typer(data_app, name="data")
app.add_typer(backbones_app, name="backbones")

F = TypeVar("F", bound=Callable[..., Any])

HomeOption = Annotated[
    Path | None, typer.Option(help="Working directory (default $WB_HOME, else ./wb-runs).")
]
TrackingOption = Annotated[str | None, typer.Option(help="An MLflow tracking URI.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a spec key: --set train.steps=100 (repeatable)."),
]
AblateOption = Annotated[
    list[str] | None,
    typer.Option("--ablate", help="Apply an axis variant: --ablate xattn_every=2 (repeatable)."),
]


def friendly(command: F) -> F:
    """User mistakes print one line (and the fix), not a stack trace, and exit with 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from workbench.registry import RegistryError
        from workbench.spec import SpecError
        from workbench.track import TrackingError

        try:
            return command(*args, **kwargs)
        except (SpecError, RegistryError, TrackingError, OSError) as e:
            # OSError: e.g. a missing file, or a model that is neither local nor downloadable
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def ints(text: str, option: str = "--seeds") -> list[int]:
    """A comma-separated list of integers given to ``option``."""
    from workbench.spec import SpecError

    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SpecError(f"{option} expects comma-separated integers, got {text!r}") from None
    if not values:
        raise SpecError(f"{option} is empty")
    return values


def emit(
    table: Any, format: str, output: Path | None, render: Callable[[Any], str] | None = None
) -> None:
    """Prints (or writes to ``output``) a polars table as a table (``render``'s text if given),
    Markdown, CSV or parquet."""
    from workbench.report import to_markdown
    from workbench.spec import SpecError

    if format == "parquet":
        if output is None:
            raise SpecError("--format parquet needs --output FILE")
        table.write_parquet(output)
        typer.echo(f"wrote {output}")
        return
    if format == "table" and render is not None:
        text = render(table)
    elif format == "table":
        import polars as pl

        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=240, fmt_str_lengths=40):
            text = str(table)
    elif format == "markdown":
        text = to_markdown(table)
    elif format == "csv":
        text = table.write_csv()
    else:
        raise SpecError(f"unknown format {format!r}; valid: table, markdown, csv, parquet")
    if output is not None:
        output.write_text(text + "\n")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text)
