"""``python -m workbench.train SPEC.json``: one rank of a run (what ``workbench.train.launch``
starts; also usable directly with ``torchrun -m workbench.train``)."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import workbench.components  # noqa: F401  (a spec read from JSON needs the registries)
from workbench.spec import RunSpec
from workbench.train.launch import die_with_parent
from workbench.train.loop import train
from workbench.train.result import RunOptions


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: the run is marked FAILED, not left RUNNING


def main(argv: list[str] | None = None) -> None:
    if "TORCHELASTIC_RUN_ID" in os.environ:  # a rank of torchrun's: it stops when torchrun
        die_with_parent()  # is gone (ours are told so when they start)
    signal.signal(signal.SIGTERM, _terminated)
    parser = argparse.ArgumentParser(prog="python -m workbench.train", description=__doc__)
    parser.add_argument("spec", type=Path, help="a RunSpec as JSON (RunSpec.to_json)")
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--experiment", default=None)
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-track", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    tags = {}
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--tag expects KEY=VALUE, got {item!r}")
        tags[key] = value
    options = RunOptions(
        home=args.home,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        tags=tags,
        resume=args.resume,
        track=not args.no_track,
        device=args.device,
        show_progress=not args.no_progress,
    )
    train(RunSpec.from_json(args.spec.read_text()), options)


if __name__ == "__main__":
    main()
