"""The training engine: a real run end to end, MLflow readback, FSDP/DDP against one process,
exact resume after SIGKILL, frozen weights, skipped non-finite steps, and bad specs."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import base_spec
from mlflow.tracking import MlflowClient

from workbench.data.stream import expand_shards, shard_pattern
from workbench.model import create_model_and_transforms
from workbench.runs import Processes, RunOptions, execute
from workbench.spec import RunSpec, SpecError
from workbench.track import metric_history
from workbench.train import loop
from workbench.train.checkpoint import completed
from workbench.train.loop import train
from workbench.train.result import RunResult, run_dir


def test_shard_pattern_names_exactly_its_shards(tmp_path):
    numbered = [str(tmp_path / f"{i:09d}.tar") for i in range(3, 7)]
    assert expand_shards(shard_pattern(numbered)) == numbered
    scattered = [str(tmp_path / "a.tar"), str(tmp_path / "b" / "c.tar")]
    assert expand_shards(shard_pattern(scattered)) == scattered
    with pytest.raises(ValueError):
        shard_pattern([])


def test_a_run_logs_params_metrics_tags_and_artifacts_to_mlflow(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(
        tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 4, "train.checkpoint_every": 2}
    )
    result = train(spec, home=tmp_path, tags={"axis.xattn_every": 1}, show_progress=False)

    assert len(result.history) == 4 and all(math.isfinite(h["loss"]) for h in result.history)
    uri = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "t"
    assert run.data.params == {k: str(v) for k, v in spec.flatten().items()}
    tags = run.data.tags
    assert tags["config_id"] == spec.config_id and tags["seed"] == "0"
    assert tags["axis.xattn_every"] == "1"
    assert len(tags["git_commit"].removesuffix("-dirty")) in (40, len("unknown"))
    assert Path(tags["checkpoint"]) == result.checkpoint.resolve()
    assert result.checkpoint.name == "step-00000004"
    expected = ["loss", "loss/laion", "loss/mmc4", "lr", "grad_norm", "nonfinite_steps",
                "throughput/tokens_per_s", "throughput/samples_per_s",
                "data/realised_mmc4_fraction"]  # fmt: skip
    for key in expected:
        history = metric_history(uri, result.run_id, key)
        assert [step for step, _ in history] == [1, 2, 3, 4], key
        assert [v for _, v in history] == pytest.approx(result.curve(key)), key
    layers = sorted(result.model.xattn_blocks())
    for kind in ("attn", "ff"):
        steps = [s for s, _ in metric_history(uri, result.run_id, f"gate/{kind}/{layers[-1]}")]
        assert steps == [2, 4]  # every log_every steps and at the end
    mmc4 = metric_history(uri, result.run_id, "data/realised_mmc4_fraction")[-1][1]
    assert mmc4 == pytest.approx(2 / 6)  # 4 LAION + 2 MMC4 samples per step
    assert metric_history(uri, result.run_id, "lr")[0][1] == pytest.approx(0.5e-3)  # warmup
    assert run.data.metrics["final/loss/mmc4"] == pytest.approx(result.final["final/loss/mmc4"])
    assert any(k.startswith("data/skipped/mmc4/") for k in run.data.metrics)
    artifact = client.download_artifacts(result.run_id, "spec.json", str(tmp_path / "dl"))
    assert RunSpec.from_json(Path(artifact).read_text()) == spec
    assert [p.name for p in completed(result.run_dir)] == ["step-00000002", "step-00000004"]
    with pytest.raises(FileExistsError, match="resume it"):  # nothing is overwritten
        train(spec, home=tmp_path, show_progress=False)


@pytest.mark.parametrize("special_embeddings", ["trainable", "frozen"])
def test_frozen_parameters_stay_bit_identical(
    tiny_world, tiny_lm_dirs, tmp_path, special_embeddings
):
    spec = base_spec(
        tiny_world,
        tiny_lm_dirs["opt"],  # tied input/output embeddings
        **{"train.steps": 3, "model.special_embeddings": special_embeddings},
    )
    trained = train(spec, home=tmp_path, track=False, show_progress=False).model
    torch.manual_seed(spec.train.seed)
    fresh, _, _ = create_model_and_transforms(
        "wb-tiny-vit", spec.model.lm, special_embeddings=special_embeddings
    )
    before = dict(fresh.named_parameters())
    moved = []
    for name, param in trained.named_parameters():
        if not param.requires_grad:
            assert torch.equal(param, before[name]), f"frozen {name} changed"
        elif not torch.equal(param, before[name]):
            moved.append(name)
    assert any(".xattn." in n for n in moved) and any(n.startswith("resampler.") for n in moved)
    special = [n for n in moved if n.endswith(".special")]
    assert bool(special) == (special_embeddings == "trainable")


def test_a_nonfinite_loss_skips_the_step_and_is_counted(
    tiny_world, tiny_lm_dirs, tmp_path, monkeypatch
):
    calls = {"n": 0}
    real = loop.token_loss_sum

    def poisoned(logits, labels):
        calls["n"] += 1
        loss = real(logits, labels)
        return loss * math.nan if calls["n"] == 3 else loss  # the first part of step 2

    monkeypatch.setattr(loop, "token_loss_sum", poisoned)
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 3})
    result = train(spec, home=tmp_path, track=False, show_progress=False)
    assert [h["skipped"] for h in result.history] == [0.0, 1.0, 0.0]
    assert result.history[-1]["nonfinite_steps"] == 1.0
    assert math.isfinite(result.history[2]["loss"])
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_activation_checkpointing_and_accumulation(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 3})
    plain = train(spec, home=tmp_path / "a", track=False, show_progress=False)
    recomputed = train(
        spec.override({"train.activation_checkpointing": True}),
        home=tmp_path / "b",
        track=False,
        show_progress=False,
    )
    assert recomputed.curve() == pytest.approx(plain.curve(), abs=1e-6)
    accumulated = train(
        spec.override({"train.grad_accum": 2}),
        home=tmp_path / "c",
        track=False,
        show_progress=False,
    )
    # the schedule counts optimizer steps: 3 of them, each over two micro-batches
    assert len(accumulated.history) == 3
    assert accumulated.history[0]["lr"] == plain.history[0]["lr"]
    assert accumulated.history[0]["throughput/samples_per_s"] > 0


def test_bf16_autocast_runs_on_cpu(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(
        tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 2, "train.precision": "bf16"}
    )
    result = train(spec, home=tmp_path, track=False, show_progress=False)
    assert all(math.isfinite(h["loss"]) for h in result.history)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model.lm": ""}, "model.lm is required"),
        ({"data.laion_shards": ""}, "set data.laion_shards"),
        ({"eval.every": 5}, r"needs eval.tasks \(with eval.data\) or eval.validation"),
        ({"eval.every": 5, "eval.tasks": "vqa", "eval.data": "/nowhere"}, "not a directory"),
        ({"eval.every": 5, "eval.tasks": "vqq", "eval.data": "/"}, "unknown \\['vqq'\\]"),
        ({"train.keep_checkpoints": 0}, "keep_checkpoints"),
    ],
)
def test_bad_specs_fail_before_training(tiny_world, tiny_lm_dirs, tmp_path, changes, message):
    with pytest.raises(SpecError, match=message):  # at override time, or before training
        spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 2}).override(changes)
        train(spec, home=tmp_path, track=False, show_progress=False)


@pytest.mark.parametrize("at_step", [0, 2])
def test_a_run_that_ends_in_an_error_is_marked_failed(
    tiny_world, tiny_lm_dirs, tmp_path, monkeypatch, at_step
):
    """Whatever raises once the MLflow run exists (here the evaluation before the first step,
    or at step 2) marks the run FAILED, never leaves it RUNNING."""
    import workbench.train.loop as loop

    def broken(parts, step):
        if step == at_step:
            raise RuntimeError("evaluation broke")
        return {}

    monkeypatch.setattr(loop, "_evaluate", broken)
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{
        "train.steps": 3, "train.checkpoint_every": 0, "eval.every": 2,
        "eval.validation": tiny_world["validation"]})  # fmt: skip
    with pytest.raises(RuntimeError, match="evaluation broke"):
        train(spec, home=tmp_path, show_progress=False)
    client = MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.status == "FAILED"


def test_the_evaluation_before_the_first_step_can_be_left_out(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{
        "train.steps": 2, "train.checkpoint_every": 0, "eval.every": 2,
        "eval.validation": tiny_world["validation"]})  # fmt: skip
    uri = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    steps = {}
    for at_start in (True, False):
        result = train(spec.override({"eval.at_start": at_start}), home=tmp_path,
                       show_progress=False)  # fmt: skip
        steps[at_start] = [s for s, _ in metric_history(uri, result.run_id, "val/loss/laion")]
    assert steps == {True: [0, 2], False: [2]}
    assert spec.override({"eval.at_start": False}).config_id != spec.config_id


def _run_in_subprocess(spec: RunSpec, home: Path, *args: str) -> subprocess.Popen:
    spec_file = home / f"spec-{time.monotonic_ns()}.json"
    home.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(spec.to_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "workbench.train", str(spec_file), "--home", str(home), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_a_run_killed_at_step_30_resumes_to_the_same_losses(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(
        tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 60, "train.checkpoint_every": 10}
    )
    home = tmp_path / "killed"
    child = _run_in_subprocess(spec, home, "--no-progress")
    marker = run_dir(spec, home) / "checkpoints" / "step-00000030" / "COMPLETE"
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint at step 30"
        time.sleep(0.01)
    uri = f"sqlite:///{home.resolve() / 'mlflow.db'}"
    run_id = json.loads((marker.parent / "state.json").read_text())["run_id"]
    while True:  # until steps after the newest checkpoint are in MLflow: they must not double
        newest = int(completed(run_dir(spec, home))[-1].name.removeprefix("step-"))
        written = [m.step for m in MlflowClient(uri).get_metric_history(run_id, "loss")]
        if written and max(written) > newest:
            break
        assert child.poll() is None and newest < 60, "no step after a checkpoint was written"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert not (run_dir(spec, home) / "result.json").exists()  # it really died mid-run

    # the resumed and the uninterrupted runs run as the killed one did (a process, one thread)
    assert _run_in_subprocess(spec, home, "--no-progress", "--resume").wait() == 0
    assert _run_in_subprocess(spec, tmp_path / "whole", "--no-progress").wait() == 0
    resumed, whole = (
        RunResult.from_json((run_dir(spec, h) / "result.json").read_text())
        for h in (home, tmp_path / "whole")
    )
    assert len(resumed.history) == len(whole.history) == 60
    for key in ("loss", "loss/laion", "loss/mmc4", "grad_norm"):
        assert resumed.curve(key) == pytest.approx(whole.curve(key), abs=1e-6, rel=0), key
    run = MlflowClient(uri).get_run(resumed.run_id)
    assert run.info.status == "FINISHED" and "resumed_from" in run.data.tags
    logged = [v for _, v in metric_history(uri, resumed.run_id, "loss")]
    assert logged == pytest.approx(whole.curve("loss"), abs=1e-6, rel=0)  # one run, steps 1-60
    for key in ("loss", "grad_norm", "lr"):  # as MLflow holds them: every step once
        raw = MlflowClient(uri).get_metric_history(resumed.run_id, key)
        assert sorted(m.step for m in raw) == list(range(1, 61)), key


@pytest.mark.distributed
@pytest.mark.parametrize("strategy", ["fsdp", "ddp"])
def test_two_processes_match_one(tiny_world, tiny_lm_dirs, tmp_path, strategy):
    spec = base_spec(
        tiny_world, tiny_lm_dirs["opt"],
        **{"train.steps": 10, "eval.every": 5, "eval.data": tiny_world["eval"],
           "eval.tasks": "vqa,classification_shape", "eval.shots": "0,2", "eval.subset": 5},
    )  # fmt: skip
    single = train(spec, home=tmp_path / "one", track=False, show_progress=False)
    two = execute(
        spec.override({"train.strategy": strategy}),
        RunOptions(home=tmp_path / "two", tags={"axis.strategy": strategy}, show_progress=False),
        Processes(nproc_per_node=2),
    )
    for key in ("loss", "loss/laion", "loss/mmc4", "grad_norm", "gate/attn/3"):
        assert two.curve(key) == pytest.approx(single.curve(key), abs=1e-4, nan_ok=True), key
    # evaluation splits the 5 examples over the ranks (one padded) and scores each once
    for key in ("eval/vqa/2shot", "eval/classification_shape/0shot"):
        assert [h[key] for h in two.history if key in h] == pytest.approx(
            [h[key] for h in single.history if key in h], abs=1e-6
        ), key
    logged = MlflowClient(f"sqlite:///{(tmp_path / 'two').resolve() / 'mlflow.db'}").get_run(
        two.run_id
    )
    assert logged.data.tags["axis.strategy"] == strategy  # rank 0 tracked it
    assert logged.data.params["train.strategy"] == strategy
