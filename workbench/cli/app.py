"""The ``wb`` application, its command groups, and what every command shares: the options, and
turning a user's mistake into one line and exit code 2."""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
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


DEBUG = {"on": os.environ.get("WB_DEBUG", "") not in ("", "0")}


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show an error's traceback (always kept in a log).")
    ] = False,
    project: Annotated[
        Path | None,
        typer.Option(
            help="The project whose experiments/ and ablations/ are loaded (they run "
            "as code); default: the nearest directory with a pyproject.toml."
        ),
    ] = None,
) -> None:
    """Flamingo Workbench."""
    DEBUG["on"] = DEBUG["on"] or debug
    if project is not None:  # in the environment, so study workers and ranks see it too
        os.environ["WB_PROJECT"] = str(project.resolve())


def friendly(command: F) -> F:
    """Every error ends in one line, ``error: <what happened>``, naming the log file that keeps
    its traceback (``wb --debug`` prints it too); exit code 1 for a failed training job, 2 for
    everything else. Errors of the user's making say how to fix them."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from workbench.train.result import JobFailed

        try:
            return command(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except Exception as error:
            log = _keep_traceback(error)
            if DEBUG["on"]:
                traceback.print_exception(error)
            typer.echo(f"error: {_one_line(error)} (traceback: {log})", err=True)
            raise typer.Exit(1 if isinstance(error, JobFailed) else 2) from None

    return wrapper  # type: ignore[return-value]


#: Errors whose message says what happened; any other type is named before its message.
_EXPLAINED = (ValueError, OSError, RuntimeError, LookupError)


def _one_line(error: BaseException) -> str:
    from workbench.registry import RegistryError
    from workbench.spec import SpecError
    from workbench.track import TrackingError

    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > 300:
        text = text[:297] + "..."
    plain = (SpecError, RegistryError, TrackingError, FileNotFoundError)
    if isinstance(error, plain) or (isinstance(error, _EXPLAINED) and text):
        if isinstance(error, json.JSONDecodeError):
            return f"malformed JSON: {text}"
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _keep_traceback(error: BaseException) -> Path:
    """Writes ``error``'s traceback under the temporary directory's ``wb-errors/``: a command
    that fails writes nothing into the home or the working directory."""
    folder = Path(tempfile.gettempdir()) / "wb-errors"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text("".join(traceback.format_exception(error)))
    return path


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
