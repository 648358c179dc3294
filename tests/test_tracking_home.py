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
