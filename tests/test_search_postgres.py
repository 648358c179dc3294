"""Studies across processes on a real PostgreSQL server (Debian's postgres 15 binaries), with
Optuna's RDB storage and an MLflow tracking server on loopback backed by the same server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import base_spec, experiment_file
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from workbench.search import Study, run_study

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(command: list[str]) -> list[str]:
    """postgres refuses to run as root: drop to the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres():
    if not (POSTGRES_BIN / "initdb").exists() or (
        os.geteuid() == 0 and not shutil.which("runuser")
    ):
        pytest.skip("PostgreSQL 15 server binaries are not installed")
    root = Path(tempfile.mkdtemp(prefix="wb-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        root.chmod(0o755)
    port = _free_port()
    subprocess.run(_as_postgres([str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8"]),
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run(_as_postgres([str(POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-w", "-l",
                                 str(root / "log"), "-o", f"-p {port} -k {root} -h 127.0.0.1",
                                 "start"]), check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        for database in ("optuna", "mlflow"):
            psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
            create = [*psql, "-c", f"CREATE DATABASE {database}"]
            subprocess.run(create, check=True, stdout=subprocess.DEVNULL)
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres([str(POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-m", "fast",
                                     "stop"]), check=False, stdout=subprocess.DEVNULL)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    port = _free_port()
    artifacts = tmp_path_factory.mktemp("artifacts")
    log = (artifacts / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"{postgres}/mlflow", "--artifacts-destination", str(artifacts),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            if server.poll() is not None:
                pytest.fail(
                    "the MLflow server exited: " + (artifacts / "server.log").read_text()[-2000:]
                )
            assert time.monotonic() < deadline, "the MLflow server did not come up"
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(20)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_workers_share_a_study_on_postgres_with_an_mlflow_server(
    postgres, mlflow_server, tiny_world, tiny_lm_dirs, tmp_path
):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 2})
    experiment = experiment_file(tmp_path, spec, "pg_experiment")
    study = Study(
        "postgres-grid", str(experiment),
        {"xattn_every": (1, 2), "special_embeddings": ("trainable", "frozen")}, seeds=(0,),
    )  # fmt: skip
    done = run_study(
        study, storage=f"{postgres}/optuna", workers=2, home=tmp_path, tracking_uri=mlflow_server
    )
    trials = done.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both workers took trials
    client = MlflowClient(mlflow_server)
    parent = done.user_attrs["mlflow_parent_run_id"]
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'"
    )
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert {c.info.run_id for c in children} == {t.user_attrs["run_id/seed0"] for t in trials}
