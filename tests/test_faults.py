"""Fault injection: what happens to real runs when their files, processes or inputs go wrong.
Each fault ends in an exact resume, a resume from an older intact checkpoint (said in one line
and tagged on the MLflow run), or a one-line error; never a silent difference, never a
traceback, never a run left RUNNING (or, killed outright, one not recognisable as interrupted).

Damaged checkpoints (flipped byte, truncated file or header, malformed JSON, missing files, a
rank's missing shard), killed ranks and launchers, where a job listens, killed study workers,
simultaneous starts on a new store, a filter that keeps nothing, and values that make no sense.
Every case of the spec's ranges and of bad shard patterns is in ``test_spec`` and
``test_pipeline``; here a few of each go through ``wb run``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from helpers import base_spec, experiment_file
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from workbench import track
from workbench.cli import app
from workbench.runs import Processes, RunOptions, execute
from workbench.search import WORKER, Study, run_study, storage_for, study_json
from workbench.track import default_uri, interrupted_runs
from workbench.train.checkpoint import CheckpointError, completed
from workbench.train.loop import train
from workbench.train.result import JobFailed, run_dir

pytestmark = pytest.mark.slow
PIPED = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}


def _tensor_file(checkpoint: Path, index: int = 0) -> Path:
    return sorted((checkpoint / "tensors").glob("*.safetensors"))[index]


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "flipped byte": (lambda c: _flip_byte(_tensor_file(c)), "content differs"),
    "truncated tensor file": (
        lambda c: os.truncate(_tensor_file(c), _tensor_file(c).stat().st_size // 2),
        "bytes",
    ),
    "truncated header": (lambda c: os.truncate(_tensor_file(c), 4), "bytes"),
    "malformed state.json": (  # the same size, no longer JSON
        lambda c: (c / "state.json").write_bytes((c / "state.json").read_bytes()[:-1] + b"@"),
        "content differs",
    ),
    "missing tensor file": (lambda c: _tensor_file(c).unlink(), "is missing"),
    "missing RNG file": (lambda c: (c / "rng-rank0.safetensors").unlink(), "is missing"),
}


@pytest.fixture(scope="module")
def finished(tiny_world, tiny_lm_dirs, tmp_path_factory):
    """A 6-step run with a checkpoint every 2 steps (all 3 kept) and its losses."""
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{
        "train.steps": 6, "train.checkpoint_every": 2, "train.keep_checkpoints": 3})  # fmt: skip
    home = tmp_path_factory.mktemp("finished")
    whole = train(spec, home=home, show_progress=False)
    return spec, home, whole


def _copy_home(home: Path, to: Path) -> Path:
    subprocess.run(["cp", "-a", f"{home}/.", str(to)], check=True)
    return to


@pytest.mark.parametrize("fault", list(DAMAGE))
def test_a_damaged_checkpoint_is_never_used_resume_falls_back(finished, tmp_path, fault, capsys):
    spec, home, whole = finished
    home = _copy_home(home, tmp_path / "home")
    newest = completed(run_dir(spec, home))[-1]
    damage, reason = DAMAGE[fault]
    damage(newest)

    resumed = train(spec, home=home, resume=True, show_progress=False)

    said = capsys.readouterr().out
    assert f"resume: skipped damaged {newest.name}: " in said and reason in said
    assert "resuming from step-00000004" in said
    assert resumed.curve("loss") == pytest.approx(whole.curve("loss"), abs=1e-6, rel=0)
    assert resumed.curve("grad_norm") == pytest.approx(whole.curve("grad_norm"), abs=1e-6, rel=0)
    run = MlflowClient(f"sqlite:///{home.resolve() / 'mlflow.db'}").get_run(resumed.run_id)
    assert run.info.status == "FINISHED" and reason in run.data.tags["resume_fallback"]
    assert [c.name for c in completed(run_dir(spec, home))] == [
        "step-00000002", "step-00000004", "step-00000006"]  # fmt: skip


def test_no_intact_checkpoint_is_a_one_line_error_naming_the_damaged_file(finished, tmp_path):
    spec, home, _ = finished
    home = _copy_home(home, tmp_path / "home")
    for checkpoint in completed(run_dir(spec, home)):
        _flip_byte(_tensor_file(checkpoint))
    with pytest.raises(CheckpointError, match=r"no intact checkpoint in .*step-00000006: .*"
                       r"safetensors: its content differs"):  # fmt: skip
        train(spec, home=home, resume=True, show_progress=False)
    experiment = experiment_file(tmp_path, spec)
    result = CliRunner().invoke(app, ["run", str(experiment), "--resume", "--home", str(home)])
    assert result.exit_code == 2
    (line,) = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert "no intact checkpoint" in line and "Traceback" not in result.output


@pytest.mark.distributed
@pytest.mark.parametrize("rank", [0, 1])
def test_a_missing_shard_of_an_fsdp_checkpoint_is_never_used(
    tiny_world, tiny_lm_dirs, tmp_path, rank
):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{
        "train.steps": 4, "train.checkpoint_every": 2, "train.strategy": "fsdp"})  # fmt: skip
    options = RunOptions(home=tmp_path, show_progress=False)
    whole = execute(spec, options, Processes(nproc_per_node=2))
    newest = completed(run_dir(spec, tmp_path))[-1]
    shards = sorted((newest / "tensors").glob("*.safetensors"))
    assert len(shards) == 2  # one per rank
    shards[rank].unlink()
    resumed = execute(spec, RunOptions(home=tmp_path, resume=True, show_progress=False),
                      Processes(nproc_per_node=2))  # fmt: skip
    assert resumed.curve("loss") == pytest.approx(whole.curve("loss"), abs=1e-5, rel=0)
    run = MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}").get_run(resumed.run_id)
    assert "is missing" in run.data.tags["resume_fallback"]


@pytest.mark.distributed
def test_a_killed_rank_ends_the_job_in_one_line_and_marks_the_run_failed(
    tiny_world, tiny_lm_dirs, tmp_path
):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{
        "train.steps": 400, "train.checkpoint_every": 2, "train.strategy": "fsdp"})  # fmt: skip
    marker = run_dir(spec, tmp_path) / "checkpoints" / "step-00000002" / "COMPLETE"
    killer = _kill_when(marker, tmp_path, rank=1)
    with pytest.raises(JobFailed) as failed:
        execute(spec, RunOptions(home=tmp_path, show_progress=False), Processes(nproc_per_node=2))
    killer.join(timeout=60)
    message = str(failed.value)
    assert message.startswith("rank 1 was killed by SIGKILL; its log: ")
    assert "\n" not in message and Path(message.split("its log: ")[1].split(". ")[0]).is_file()
    client = MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.status == "FAILED"
    assert not _ranks_alive(spec, tmp_path)


def _rank_pids(spec, home: Path) -> list[int]:
    """The process ids of the ranks training ``spec`` (by their command line)."""
    found = subprocess.run(["pgrep", "-f", "workbench.train"], capture_output=True, text=True)
    mine = []
    for pid in map(int, found.stdout.split()):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"LOCAL_RANK" in b" ".join(environ) and str(home).encode() in command:
            mine.append(pid)
    return mine


def _ranks_alive(spec, home: Path) -> bool:
    deadline = time.monotonic() + 60
    while _rank_pids(spec, home) and time.monotonic() < deadline:
        time.sleep(0.5)
    return bool(_rank_pids(spec, home))


def _kill_when(marker: Path, home: Path, rank: int):
    """A thread that SIGKILLs local rank ``rank`` once ``marker`` exists."""

    def kill() -> None:
        deadline = time.monotonic() + 300
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in _rank_pids(None, home):
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"LOCAL_RANK={rank}".encode() in environ:
                os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.distributed
@pytest.mark.parametrize("how", ["SIGTERM to wb", "SIGKILL to the group", "SIGKILL to wb alone"])
def test_ranks_die_with_their_launcher(tiny_world, tiny_lm_dirs, tmp_path, how):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{
        "train.steps": 400, "train.checkpoint_every": 2, "train.strategy": "fsdp"})  # fmt: skip
    experiment = experiment_file(tmp_path, spec)
    launcher = subprocess.Popen(
        [str(Path(sys.executable).with_name("wb")), "run", str(experiment), "--nproc-per-node",
         "2", "--home", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    marker = run_dir(spec, tmp_path) / "checkpoints" / "step-00000002" / "COMPLETE"
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert launcher.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    if how == "SIGTERM to wb":
        launcher.send_signal(signal.SIGTERM)
    elif how == "SIGKILL to wb alone":  # the ranks are told (PR_SET_PDEATHSIG) and stop
        launcher.send_signal(signal.SIGKILL)
    else:
        os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait(timeout=120)
    assert not _ranks_alive(spec, tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    if how != "SIGKILL to the group":
        assert run.info.status == "FAILED"
    else:  # killed outright, the ranks cannot say so: recognisable as interrupted
        interrupted = [r["run_id"] for r in interrupted_runs(default_uri(tmp_path), "t")]
        assert run.info.status == "RUNNING" and interrupted == [run.info.run_id]


def _listening(root: int) -> set[str]:
    """The addresses that ``root`` and its descendants listen on (TCP)."""
    import psutil

    found = set()
    family = psutil.Process(root)
    for process in [family, *family.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            for connection in process.net_connections(kind="tcp"):
                if connection.status == psutil.CONN_LISTEN:
                    found.add(connection.laddr.ip)
    return found


@pytest.mark.distributed
def test_a_single_machine_job_listens_on_loopback_only(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{
        "train.steps": 400, "train.checkpoint_every": 2, "train.strategy": "fsdp"})  # fmt: skip
    launcher = subprocess.Popen(
        [str(Path(sys.executable).with_name("wb")), "run", str(experiment_file(tmp_path, spec)),
         "--nproc-per-node", "2", "--home", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    marker = run_dir(spec, tmp_path) / "checkpoints" / "step-00000002" / "COMPLETE"
    deadline = time.monotonic() + 300
    while not marker.exists():  # the ranks have met and trained two steps
        assert launcher.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    try:
        addresses = _listening(launcher.pid)
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=120)
    assert addresses == {"127.0.0.1"}  # the store and gloo's connections, nothing wider


_GROUP_OF_ONE = """
import psutil
from workbench.train import dist
where = dist.init("fsdp", "cpu")
assert where.world_size == 1 and where.active
print(sorted({c.laddr.ip for c in psutil.Process().net_connections(kind="tcp")
              if c.status == psutil.CONN_LISTEN}))
"""


def test_a_single_process_group_listens_on_loopback_only():
    """``ddp``/``fsdp`` in one process form a group of one: its store is in memory."""
    listening = subprocess.run([sys.executable, "-c", _GROUP_OF_ONE], check=True, **PIPED).stdout
    assert listening.strip().splitlines()[-1] in ("[]", "['127.0.0.1']"), listening


@pytest.mark.distributed
def test_two_machines_meet_on_the_interface_they_name(tiny_world, tiny_lm_dirs, tmp_path):
    """Two "machines" of one process each (two launchers here, on loopback) train what one
    process trains; the second finds the first's store at --rdzv-endpoint."""
    from workbench.train.dist import free_port

    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 4})
    single = train(spec, home=tmp_path / "one", track=False, show_progress=False)
    experiment = experiment_file(tmp_path, spec.override({"train.strategy": "fsdp"}))
    endpoint = f"127.0.0.1:{free_port()}"
    wb = [str(Path(sys.executable).with_name("wb")), "run", str(experiment)]
    meet = ["--nnodes", "2", "--rdzv-endpoint", endpoint, "--interface", "lo"]
    machines = [
        subprocess.Popen(
            [*wb, *meet, "--node-rank", str(node), "--home", str(tmp_path / f"machine-{node}")],
            **PIPED,
        )
        for node in (0, 1)
    ]
    outputs = [m.communicate(timeout=300)[0] for m in machines]
    assert [m.returncode for m in machines] == [0, 0], outputs
    (run_id,) = [line.split()[1].rstrip(":") for line in outputs[0].splitlines()
                 if line.startswith("run ")]  # fmt: skip
    client = MlflowClient(default_uri(tmp_path / "machine-0"))
    losses = [m.value for m in client.get_metric_history(run_id, "loss")]
    assert losses == pytest.approx(single.curve("loss"), abs=1e-4)


def test_several_machines_need_their_rendezvous_named(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{"train.strategy": "fsdp"})
    experiment = str(experiment_file(tmp_path, spec))
    home = ["--home", str(tmp_path)]
    two = ["--nnodes", "2", "--node-rank", "0"]
    cases = {
        ("--nnodes", "2"): "--rdzv-endpoint",
        (*two, "--rdzv-endpoint", "10.0.0.1:29500"): "--interface",
        (*two, "--rdzv-endpoint", "nowhere", "--interface", "lo"): "host:port",
        (*two, "--rdzv-endpoint", "10.0.0.1:29500", "--interface", "no-such0"): "no-such0",
        ("--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1", "--interface", "lo"): (
            "--node-rank"
        ),
    }
    for args, named in cases.items():
        result = CliRunner().invoke(app, ["run", experiment, *args, *home])
        assert result.exit_code == 2, (args, result.output)
        (line,) = [x for x in result.output.splitlines() if x.strip()]
        assert named in line and "Traceback" not in result.output, (args, line)
    assert not run_dir(spec, tmp_path).exists()  # nothing written before the check


def tiny_experiment(folder: Path, world: dict[str, str], lm_dir: Path) -> Path:
    spec = base_spec(world, lm_dir, **{"train.steps": 2, "train.checkpoint_every": 0})
    return experiment_file(folder, spec)


def test_a_killed_worker_leaves_a_failed_trial_and_the_study_goes_on(
    tiny_world, tiny_lm_dirs, tmp_path
):
    study = Study(
        "killed-worker",
        str(tiny_experiment(tmp_path, tiny_world, tiny_lm_dirs["llama"])),
        {"xattn_every": (1, 2)},
        seeds=(0,),
        overrides={"train.steps": 150},
    )
    storage = storage_for(None, tmp_path)
    client = MlflowClient(default_uri(tmp_path))
    killed: list[int] = []

    def kill_the_first_trials_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the study and its runs appear as it starts
                (trial,) = [t for t in optuna.load_study(study_name=study.name, storage=storage
                            ).trials if t.number == 0]  # fmt: skip
                running = client.search_runs(
                    [e.experiment_id for e in client.search_experiments()],
                    "tags.trial = '0' and attributes.status = 'RUNNING'",
                )
                if running and "pid" in trial.user_attrs:  # well inside the trial
                    os.kill(trial.user_attrs["pid"], signal.SIGKILL)
                    killed.append(trial.user_attrs["pid"])
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_the_first_trials_worker, daemon=True)
    killer.start()
    with pytest.raises(JobFailed) as failed:
        run_study(study, workers=2, home=tmp_path, live=False)
    killer.join()
    assert killed, "the first trial's worker was never seen running"
    assert re.fullmatch(
        r"search worker [12] \(killed by SIGKILL\) of 2 stopped; the other 1 went on to the end; "
        r"the next `wb search killed-worker` runs the failed cells again",
        str(failed.value),
    )
    trials = optuna.load_study(study_name=study.name, storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]  # the other ran
    experiment = client.get_experiment_by_name(study.mlflow_experiment(tmp_path)).experiment_id
    (run,) = client.search_runs([experiment], "tags.trial = '0'")
    assert run.info.status == "FAILED"  # closed by the launcher, not left RUNNING

    # the next `wb search` runs the failed cell again, once
    run_study(study, home=tmp_path)
    trials = optuna.load_study(study_name=study.name, storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[2].params == trials[0].params == {"xattn_every": "1"}
    assert not client.search_runs([experiment], "attributes.status = 'RUNNING'")
    run_study(study, home=tmp_path)  # nothing left to run
    assert len(optuna.load_study(study_name=study.name, storage=storage).trials) == 3


def test_a_worker_killed_where_no_launcher_watches_is_closed_by_the_next_search(
    tiny_world, tiny_lm_dirs, tmp_path
):
    """A worker started by hand (another machine's launcher, say) dies mid-trial: the next
    `wb search` here fails its trial, closes its MLflow run and runs its cell again."""
    study = Study(
        "killed-lone-worker",
        str(tiny_experiment(tmp_path, tiny_world, tiny_lm_dirs["llama"])),
        {"xattn_every": (1,)},
        seeds=(0,),
        overrides={"train.steps": 150},
    )
    from workbench.search import open_study
    from workbench.track import study_parent_run

    storage = storage_for(None, tmp_path)
    open_study(study, storage)  # its cells enqueued
    parent = study_parent_run(
        default_uri(tmp_path), study.mlflow_experiment(tmp_path), study.name, 0, tmp_path
    )
    worker = subprocess.Popen(
        [*WORKER, study.name, "--home", str(tmp_path),
         "--tracking-uri", default_uri(tmp_path), "--parent-run-id", parent,
         "--study-json", study_json(study)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    client = MlflowClient(default_uri(tmp_path))
    while not client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "tags.trial = '0' and attributes.status = 'RUNNING'",
    ):  # well inside the trial: its run is tracked
        assert worker.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    experiment = client.get_experiment_by_name(study.mlflow_experiment(tmp_path)).experiment_id
    (killed,) = client.search_runs([experiment], "tags.trial = '0'")
    assert killed.info.status == "RUNNING"  # its process was killed outright
    run_study(study, home=tmp_path)
    trials = optuna.load_study(study_name=study.name, storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert client.get_run(killed.info.run_id).info.status == "FAILED"


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


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"train.lr": "nan"}, "train.lr"),
        ({"train.lr": "inf"}, "train.lr"),
        ({"train.lr": "-1"}, "train.lr"),
        ({"train.clip_norm": "nan"}, "train.clip_norm"),
        ({"model.xattn_every": "0"}, "xattn_every"),
        ({"model.xattn_every": "5"}, "xattn_every"),
        ({"data.workers": "-1"}, "data.workers"),
        ({"train.log_every": "0"}, "train.log_every"),
        ({"data.laion_shards": "{world}"}, "a directory"),
        ({"data.laion_shards": "{world}/nothing-{{0..3}}.tar"}, "nothing-"),
        ({"data.laion_shards": "{experiment}"}, "not a tar"),
    ],
)
def test_bad_values_end_wb_run_in_one_line_before_anything_is_written(
    tiny_world, tiny_lm_dirs, tmp_path, changes, named
):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 2})
    experiment = experiment_file(tmp_path, spec)
    fill = {"world": str(Path(tiny_world["eval"]).parent), "experiment": str(experiment)}
    sets = [x for k, v in changes.items() for x in ("--set", f"{k}={v.format(**fill)}")]
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["run", str(experiment), *sets, "--home", str(home)])
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.output.splitlines() if x.strip()]
    assert named in line and "Traceback" not in result.output, line
    assert not (home / "runs").exists()  # no run directory, no spec.json, no checkpoint
    if (home / "mlflow.db").exists():
        client = MlflowClient(default_uri(home))
        assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_a_filter_that_keeps_nothing_ends_the_run_in_one_line(tiny_world, tiny_lm_dirs, tmp_path):
    """Every MMC4 record is valid and every one is filtered out (threshold 0.99): the run stops
    after 10,000 records dropped in a row, instead of spinning on the endless stream."""
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 2})
    experiment = experiment_file(tmp_path, spec)
    result = CliRunner().invoke(app, [
        "run", str(experiment), "--set", "data.mmc4_filter.threshold=0.99",
        "--home", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.output.splitlines() if "error" in x]  # after the progress bar
    assert line.startswith("error: mmc4: the filters dropped 10,000 records in a row"), line
    assert "no_images_above_threshold" in line and "Traceback" not in result.output
    client = MlflowClient(default_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.status == "FAILED"
