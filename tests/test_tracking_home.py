"""MLflow keeps everything under the home: a study and its report (as ``wb report`` writes and
logs it) leave the working directory empty, and every experiment's artifacts live in
``<home>/artifacts``."""

from __future__ import annotations

from pathlib import Path

from helpers import base_spec, experiment_file
from mlflow.tracking import MlflowClient

import workbench.components  # noqa: F401  (base_spec builds a spec of registered components)
from workbench import track
from workbench.search import Study, report_study, run_study


def test_a_study_and_its_report_write_nothing_into_the_working_directory(
    tiny_world, tiny_lm_dirs, tmp_path, monkeypatch
):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    spec = base_spec(
        tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 2, "train.checkpoint_every": 0}
    )
    path = experiment_file(home, spec, "home_experiment")
    study = Study("tracking-home", str(path), {"xattn_every": (1, 2)}, seeds=(0,))
    monkeypatch.chdir(cwd)

    done = run_study(study, home=home)
    paths = report_study(study, home)  # what ``wb report`` does: write_study_report, log_artifacts
    assert paths["html"].is_relative_to(home)
    parent = done.user_attrs["mlflow_parent_run_id"]

    assert sorted(p.name for p in cwd.iterdir()) == []
    client = MlflowClient(track.default_uri(home))
    artifacts = (home / "artifacts").resolve()
    for experiment in client.search_experiments():  # the "Default" one too
        assert experiment.artifact_location.startswith(artifacts.as_uri()), experiment
    logged = Path(client.get_run(parent).info.artifact_uri.removeprefix("file://"))
    assert (logged / "report" / "report.html").is_file()
    assert logged.is_relative_to(artifacts)


def test_another_database_keeps_its_artifacts_under_the_home_too(tmp_path, monkeypatch):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    uri = f"sqlite:///{tmp_path / 'elsewhere' / 'other.db'}"  # `wb run --tracking-uri ...`
    (tmp_path / "elsewhere").mkdir()
    experiment_id = track.prepare(uri, "elsewhere_experiment", home)
    client = MlflowClient(uri)
    artifacts = (home / "artifacts").resolve().as_uri()
    assert client.get_experiment(experiment_id).artifact_location.startswith(artifacts)
    default = client.get_experiment_by_name("Default")  # unused by the workbench: beside the db
    assert default is not None
    assert default.artifact_location == (tmp_path / "elsewhere" / "artifacts" / "0").as_uri()
    assert sorted(p.name for p in cwd.iterdir()) == []


_START = """
import sys
from pathlib import Path

from workbench import track

home = Path(sys.argv[1])
run = track.Tracker(track.default_uri(home), "together", run_name=sys.argv[2], params={"i": 1},
                    tags={}, home=home, system_metrics_every_s=60)
run.log_metrics({"x": 1.0}, 0)
run.finish("FINISHED")
"""


def test_four_processes_start_together_on_a_new_store(tmp_path):
    """MLflow's schema migration of a new SQLite store fails when two processes run it at once;
    the store is created under a file lock, so four runs starting together all finish."""
    import subprocess
    import sys

    home = tmp_path / "home"
    starts = [
        subprocess.Popen([sys.executable, "-c", _START, str(home), f"r{i}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(4)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300)[0] for p in starts]
    assert [p.returncode for p in starts] == [0] * 4, "\n".join(outputs)
    client = MlflowClient(track.default_uri(home))
    experiment = client.get_experiment_by_name("together")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["r0", "r1", "r2", "r3"]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_a_process_is_gone_once_it_ended_even_unreaped():
    import os
    import socket
    import subprocess
    import time

    here = socket.gethostname()
    assert not track.process_gone(here, os.getpid())
    assert not track.process_gone("another-machine", 999_999_999)  # not known from here
    assert not track.process_gone(here, None) and not track.process_gone(here, "x")
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().split()[2] != "Z":  # a zombie: not reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert track.process_gone(here, child.pid)  # os.kill(pid, 0) would still succeed
    child.wait()
    assert track.process_gone(here, str(child.pid))
