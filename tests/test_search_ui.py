"""A search you can watch, under the name you gave it: ``wb search`` shows its trials and the
current run live (in a terminal only), prints its trials with run ids in full, records the seeds
it ran with, refuses other seeds for a continued study, and ends its MLflow parent run FINISHED,
FAILED or KILLED with the study's summary metrics. ``wb list`` lists the studies without optuna.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from helpers import base_spec, experiment_file
from mlflow.tracking import MlflowClient
from rich.console import Console
from typer.testing import CliRunner

import workbench.search.worker as worker
from workbench.cli import app
from workbench.search import Study, run_study
from workbench.search.display import LiveDisplay, Quiet, print_trials, remaining_seconds, watch
from workbench.spec import SpecError
from workbench.track import default_uri

REPO = Path(__file__).resolve().parents[1]


def _text(renderable: object, width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, record=True)
    console.print(renderable)
    return console.export_text()


def test_the_live_display_shows_the_trials_the_current_run_and_the_time_left():
    optuna_study = optuna.create_study(study_name="watched", direction="maximize")
    optuna_study.set_user_attr("seeds", [0, 1])
    optuna_study.enqueue_trial({"x": 0.25})
    optuna_study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    optuna_study.ask()  # a trial running elsewhere
    shown = LiveDisplay(optuna_study, budget=5, console=Console(file=io.StringIO()))
    shown.trial_started(3, {"xattn_every": "4", "special_embeddings": "frozen"})
    shown.run_started(seed=1, index=1, steps=150)
    shown.step(37, {"loss": 2.31234, "loss/laion": 2.0})
    frame = _text(shown.render())
    assert "search watched" in frame and "2/5 trials" in frame and "elapsed 0:00:0" in frame
    assert "2 complete, 0 pruned, 0 failed; 1 running, 2 queued; best" in frame
    assert "trial 3: xattn_every=4 special_embeddings=frozen" in frame
    assert "seed 1 (2/2)" in frame and "step 37/150" in frame and "loss 2.3123" in frame
    assert "left ~" in frame


def test_the_time_left_comes_from_finished_trials_else_from_the_current_one():
    assert remaining_seconds([10.0, 30.0], remaining=4, workers=2) == 40.0
    assert remaining_seconds([20.0], remaining=2, workers=1, fraction=0.5, in_trial=5.0) == 35.0
    assert remaining_seconds([], remaining=3, workers=1, fraction=0.25, in_trial=10.0) == 110.0
    assert remaining_seconds([], remaining=3, workers=1) is None
    assert remaining_seconds([5.0], remaining=0, workers=1) == 0.0


def test_the_display_is_off_in_tests_and_when_stdout_is_no_terminal(capsys):
    optuna_study = optuna.create_study()
    assert type(watch(optuna_study, 2, 1)) is Quiet  # pytest: never live
    assert isinstance(watch(optuna_study, 2, 1, live=True), LiveDisplay)
    assert capsys.readouterr().out == ""


def test_the_trial_table_shows_run_ids_in_full_however_narrow_the_console():
    ids = ["a1" * 16, "b2" * 16, "c3" * 16]
    rows = [
        {"number": 0, "state": "COMPLETE", "value": 0.41234, "xattn_every": "1",
         "run_id/seed0": ids[0], "run_id/seed1": ids[1]},
        {"number": 1, "state": "FAIL", "value": None, "xattn_every": "2", "run_id/seed0": ids[2]},
    ]  # fmt: skip
    out = io.StringIO()
    print_trials(rows, Console(file=out, width=40))
    text = out.getvalue()
    assert all(f"seed{i % 2} {run_id}" in text for i, run_id in enumerate(ids[:2]))
    assert f"seed0 {ids[2]}" in text and "COMPLETE" in text and "xattn_every" in text
    assert "…" not in text


def _cheap_study(tmp_path: Path, name: str, **options) -> Study:
    """A study of an experiment that builds no inputs (``work`` is replaced in its tests)."""
    path = tmp_path / f"{name}.py"
    path.write_text(
        "from workbench.spec import RunSpec\n\n\ndef spec():\n    return RunSpec(name='cheap')\n"
    )
    return Study(name, str(path), {"xattn_every": (1, 2)}, **options)


def _parent(optuna_study: optuna.Study, home: Path):
    client = MlflowClient(default_uri(home))
    return client.get_run(optuna_study.user_attrs["mlflow_parent_run_id"])


def test_the_parent_run_ends_failed_on_an_error_and_killed_on_ctrl_c(tmp_path, monkeypatch):
    study = _cheap_study(tmp_path, "ends-badly", seeds=(0,))
    seen: list[str] = []

    def fails(study, *, storage, home, uri, parent_run_id, shown):
        seen.append(MlflowClient(uri).get_run(parent_run_id).info.status)
        raise failure

    monkeypatch.setattr(worker, "work", fails)
    for failure, status in ((RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")):
        with pytest.raises(type(failure)):
            run_study(study, home=tmp_path)
        optuna_study = optuna.load_study(
            study_name=study.name, storage=worker.storage_for(None, tmp_path)
        )
        parent = _parent(optuna_study, tmp_path)
        assert parent.info.status == status and parent.data.metrics["trials_complete"] == 0
    assert seen == ["RUNNING", "RUNNING"]  # re-opened by the continued study


def test_a_continued_study_keeps_its_seeds(tmp_path, monkeypatch):
    study = _cheap_study(tmp_path, "kept-seeds", seeds=(0, 1))

    def one_trial(study, *, storage, home, uri, parent_run_id, shown):
        optuna_study = worker.open_study(study, worker.storage_for(storage, home))
        trial = optuna_study.ask()
        optuna_study.tell(trial, 0.5)

    monkeypatch.setattr(worker, "work", one_trial)
    from workbench.study import study_variant

    done = run_study(study_variant(study, seeds=(0,)), home=tmp_path)
    assert done.study_name == "kept-seeds" and done.user_attrs["seeds"] == [0]
    with pytest.raises(SpecError, match=r"ran with seeds 0; continue it with --seeds 0 "):
        run_study(study, home=tmp_path)  # the definition's (0, 1)
    done = run_study(study_variant(study, seeds=(0,), trials=3), home=tmp_path)
    assert (
        done.user_attrs["budget"] == 3
        and len(done.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2
    )
    parent = _parent(done, tmp_path)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["study.seeds"] == "0" and parent.data.tags["study.budget"] == "3"
    assert parent.data.metrics["trials_complete"] == 2 and parent.data.metrics["best_value"] == 0.5


@pytest.mark.slow
def test_wb_search_runs_under_the_name_given_and_wb_report_finds_it(
    tiny_world, tiny_lm_dirs, tmp_path
):
    spec = base_spec(
        tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 2, "train.checkpoint_every": 0}
    )
    path = experiment_file(tmp_path, spec, "ui_experiment")
    study = Study("ui-seeds", str(path), {"xattn_every": (1, 2)}, seeds=(0, 1))
    home = ["--home", str(tmp_path)]
    runner = CliRunner()
    out = runner.invoke(app, ["search", "ui-seeds", "--seeds", "0", *home], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert f"report: wb report ui-seeds --home {tmp_path}" in out.output
    done = optuna.load_study(study_name="ui-seeds", storage=worker.storage_for(None, tmp_path))
    assert done.user_attrs["seeds"] == [0] and done.metric_names == ["final/loss/mmc4"]
    client = MlflowClient(default_uri(tmp_path))
    for trial in done.get_trials():
        run_id = trial.user_attrs["run_id/seed0"]
        assert f"seed0 {run_id}" in out.output  # the table's ids, in full
        tags = client.get_run(run_id).data.tags
        assert tags["base_config_id"] == study.base_spec(tmp_path).config_id
    parent = _parent(done, tmp_path)
    assert parent.info.status == "FINISHED" and parent.data.tags["study.seeds"] == "0"
    metrics = parent.data.metrics
    assert metrics["trials_complete"] == 2 and metrics["trials_failed"] == 0
    assert metrics["seconds"] > 0 and "best_value" in metrics and "wall_s" in metrics

    other = runner.invoke(app, ["search", "ui-seeds", "--seeds", "1", *home])
    assert other.exit_code == 2
    (line,) = other.output.strip().splitlines()  # one line, naming the traceback's log
    assert re.fullmatch(
        re.escape("error: study 'ui-seeds' ran with seeds 0; continue it with --seeds 0 (its "
                  "trials are compared over the same seeds) (traceback: ") + r"/\S+\.log\)", line
    )  # fmt: skip
    report = runner.invoke(app, ["report", "ui-seeds", *home], catch_exceptions=False)
    assert report.exit_code == 0, report.output


LIST_STUDIES = textwrap.dedent(
    """
    import sys
    from typer.testing import CliRunner
    from workbench.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert "study:" in lines, listed.output
    line = next(x for x in lines if x.startswith("  xattn_density: "))
    assert "xattn_every=1|2|4" in line and "eval/vqa_rank/4shot" in line and "seeds 0,1" in line
    tasks = runner.invoke(app, ["list", "task"])
    assert tasks.exit_code == 0 and "  vqa" in tasks.output, tasks.output
    shown = runner.invoke(app, ["show", "shapes_tiny", "--ablate", "xattn_every=2"])
    assert shown.exit_code == 0 and "axis.xattn_every=2" in shown.output, shown.output
    assert "optuna" not in sys.modules, "wb list or wb show imported optuna"
    """
)


def test_wb_list_lists_the_studies_without_importing_optuna(tmp_path):
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "WB_HOME": str(tmp_path / "home"),
        "PYTHONPATH": path,
    }
    done = subprocess.run(
        [sys.executable, "-c", LIST_STUDIES], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
