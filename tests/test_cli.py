"""The ``wb`` command line, the experiments and axes, and the comparison report."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from scipy import stats
from typer.testing import CliRunner

from workbench import experiments
from workbench.axes import AXES, load_ablations
from workbench.cli import app, ui_command
from workbench.report import compare, mean_ci, runs_frame
from workbench.spec import RunSpec
from workbench.track import default_uri

runner = CliRunner()


def wb(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory, shapes_backbones) -> Path:
    """A workbench home whose backbones cache is the session's build."""
    root = tmp_path_factory.mktemp("home")
    (root / "backbones").symlink_to(shapes_backbones.root.parent)
    return root


@pytest.mark.parametrize("name", experiments.names())
def test_every_experiment_resolves_to_a_valid_spec(name, tmp_path):
    loaded = experiments.load(name)
    spec = loaded.spec(home=tmp_path) if name.startswith("shapes") else loaded.spec()
    assert isinstance(spec, RunSpec) and spec.name == name
    assert RunSpec.from_json(spec.to_json()) == spec
    assert spec.model.lm and spec.model.vision
    if name.startswith("openflamingo"):
        assert spec.data.mmc4_filter.options.threshold == 0.24  # the paper's
        assert spec.train.lr == 1e-4 and spec.train.schedule.options.warmup_steps == 1875
    else:
        assert loaded.prepare is not None and str(tmp_path) in spec.data.laion_shards


def test_the_axes_register_the_papers_values_and_open_ones():
    load_ablations()
    assert {"special_embeddings", "xattn_every", "mixture", "mmc4_threshold"} <= set(AXES.names())
    assert AXES.get("xattn_every").values() == ["1", "2", "4"]
    assert AXES.get("mmc4_threshold").values() == ["0.24", "0.28", "0.32"]
    assert AXES.get("mmc4_threshold").span == (0.1, 0.4)
    spec = RunSpec()  # paired 64 + 32
    mixed = AXES.get("mixture").apply(spec, "1:2").data.mixture.options
    assert (mixed.laion_batch_size, mixed.mmc4_batch_size) == (32, 64)
    only = AXES.get("mixture").apply(spec, "mmc4_only").data.mixture
    assert only.name == "mmc4_only" and only.options.batch_size == 96
    assert AXES.get("mmc4_threshold").apply(spec, 0.3).data.mmc4_filter.options.threshold == 0.3
    assert AXES.get("xattn_every").apply(spec, "8").model.xattn_every == 8  # no LM to check
    loaded = load_ablations()  # a second load registers nothing twice
    assert loaded is AXES


def test_list_shows_kinds_options_experiments_and_axes():
    out = wb("list").output
    assert "paired(laion_batch_size=64, mmc4_batch_size=32" in out
    assert "constant(warmup_steps=1875)" in out
    assert "perceiver(depth=6, num_latents=64" in out
    assert "xattn_every: 1, 2, 4 + open values (baseline 1)" in out
    assert "experiment: openflamingo_3b, openflamingo_4b, openflamingo_9b, shapes_small" in out
    assert wb("list", "nope").exit_code == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "shapes_tny"], "Did you mean shapes_tiny"),
        (["show", "shapes_tiny", "--set", "train.stepz=3"], "Did you mean steps?"),
        (["show", "shapes_tiny", "--set", "train.steps"], "expects KEY=VALUE"),
        (["show", "shapes_tiny", "--ablate", "mixture=0:1"], "two positive integers"),
        (["show", "shapes_tiny", "--ablate", "depth=2"], "unknown axis 'depth'"),
        (["run", "openflamingo_3b"], "set data.laion_shards and data.mmc4_shards"),
        (["run", "shapes_tiny", "--nproc-per-node", "2"], "--set train.strategy=fsdp"),
        (["run", "shapes_tiny", "--seeds", "a,b"], "comma-separated integers"),
        (["compare", "--experiment", "nothing-here"], "no finished runs"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(args, message, tmp_path):
    result = runner.invoke(app, [*args, "--home", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_tracking_server_fails_fast(home, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result = runner.invoke(
        app,
        ["run", "shapes_tiny", "--set", "train.steps=1", "--home", str(home),
         "--tracking-uri", f"http://127.0.0.1:{port}"],
    )  # fmt: skip
    assert result.exit_code == 2 and "cannot use the MLflow tracking store" in result.output
    assert time.monotonic() - started < 120


def test_run_ablate_and_compare(home):
    common = ["--set", "train.steps=3", "--set", "train.log_every=1", "--home", str(home)]
    assert wb("run", "shapes_tiny", "--seeds", "0,1", *common).exit_code == 0
    variant = wb("run", "shapes_tiny", "--ablate", "xattn_every=2", "--seeds", "0,1", *common)
    assert variant.exit_code == 0

    frame = runs_frame(default_uri(home), "shapes_tiny")
    assert frame.height == 4 and set(frame["seed"]) == {0, 1}
    assert set(frame["status"]) == {"FINISHED"} and frame["parent_run_id"].null_count() == 4
    (base_id,) = set(frame["base_config_id"])  # the variant is compared within its base config
    table = compare(frame, ["final/loss/mmc4"])
    base = table.filter(pl.col("axis.xattn_every").is_null()).row(0, named=True)
    ablated = table.filter(pl.col("axis.xattn_every") == "2").row(0, named=True)
    assert base["n"] == ablated["n"] == ablated["pairs"] == 2
    assert base["diff"] == pytest.approx(0.0)  # the baseline against itself
    runs = frame.sort("seed")
    by = {
        key: runs.filter(pl.col("axis.xattn_every").is_null() == key)["final/loss/mmc4"]
        for key in (True, False)
    }
    assert ablated["diff"] == pytest.approx((by[False] - by[True]).mean())
    assert ablated["mean"] == pytest.approx(by[False].mean())

    out = wb("compare", "--home", str(home), "--metric", "final/loss/mmc4", "--format", "markdown")
    assert out.exit_code == 0
    assert "| variant | base_config_id | config_id | axis.xattn_every | metric |" in out.output
    assert out.output.splitlines()[2].startswith("| baseline |")  # the baseline first
    grouped = wb("compare", "--home", str(home), "--group-by", "xattn_every", "--format", "csv")
    header = "variant,base_config_id,axis.xattn_every,metric,n,mean,std"
    assert grouped.output.splitlines()[0].startswith(header)
    assert grouped.output.splitlines()[3].startswith(f"xattn_every=2,{base_id},2,")
    shown = wb("compare", "--home", str(home)).output  # the rich table
    assert f"base configuration {base_id}" in shown and "diff to baseline [95% CI]" in shown
    assert "xattn_every=2" in shown and "2 pairs" in shown
    parquet = home / "table.parquet"
    assert wb("compare", "--home", str(home), "--format", "parquet", "--output", str(parquet))
    assert pl.read_parquet(parquet).height == 4  # 2 configs x 2 metrics


def test_mean_ci_is_the_student_t_interval():
    values = [1.0, 2.0, 4.0]
    mean, std, low, high = mean_ci(values)
    expected = stats.t.interval(0.95, 2, loc=mean, scale=stats.sem(values))
    assert (low, high) == pytest.approx(expected)
    assert std == pytest.approx(pl.Series(values).std())
    assert math.isnan(mean_ci([3.0])[2])


def test_data_and_backbones_commands(home, tmp_path):
    out = wb("data", "shapes", str(tmp_path / "w"), "--pairs", "40", "--docs", "30", "--eval",
             "0", "--per-shard", "20")  # fmt: skip
    assert out.exit_code == 0 and "mmc4: 2 shards" in out.output
    pattern = f"{tmp_path}/w/mmc4/{{000000000..000000001}}.tar"
    plot = tmp_path / "stats.png"
    stats_out = wb("data", "stats", pattern, "--thresholds", "0.24,0.32", "--plot", str(plot),
                   "--format", "csv")  # fmt: skip
    assert stats_out.exit_code == 0 and "docs_losing_all_images" in stats_out.output
    assert stats_out.output.splitlines()[1].startswith("0.24,")
    assert plot.stat().st_size > 0
    built = wb("backbones", "build", "--home", str(home))  # the cached session build
    assert built.exit_code == 0 and "zero_shot_shape_accuracy" in built.output


@pytest.mark.slow
def test_ui_serves_the_workbench_database(home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ui_command(default_uri(home), "127.0.0.1", port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(10)


def test_experiments_are_loaded_from_the_project_pointed_to_only(tmp_path, monkeypatch):
    """Experiment and ablation files are code that runs: a bare working directory's are never
    loaded; ``--project DIR`` (or a pyproject.toml at or above the working directory) is."""
    monkeypatch.setenv("WB_PROJECT", "")  # removed again after the test
    cwd = tmp_path / "downloads"
    (cwd / "experiments").mkdir(parents=True)
    marker = tmp_path / "ran"
    (cwd / "experiments" / "stray.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n\n\ndef spec():\n    pass\n"
    )
    monkeypatch.chdir(cwd)
    assert "stray" not in runner.invoke(app, ["list", "experiment"]).output
    assert runner.invoke(app, ["show", "stray"]).exit_code == 2 and not marker.exists()
    assert "stray" in runner.invoke(app, ["--project", str(cwd), "list", "experiment"]).output
    monkeypatch.setenv("WB_PROJECT", "")
    (cwd / "pyproject.toml").write_text("[project]\nname = 'mine'\n")
    assert "stray" in runner.invoke(app, ["list", "experiment"]).output
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["--project", str(tmp_path / "none"), "list", "experiment"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: --project: {tmp_path / 'none'} is not a directory")
