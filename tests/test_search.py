"""Optuna studies: a grid over two parallel workers runs every cell once, as MLflow child runs
of the study's parent run; the report. (A killed worker: ``test_faults``.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from helpers import base_spec, experiment_file
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from workbench.report import holm
from workbench.search import (
    STUDIES,
    Study,
    load_studies,
    run_study,
    storage_for,
    study_from_json,
    study_json,
    study_variant,
    work,
)
from workbench.spec import RunSpec, SpecError
from workbench.track import default_uri


def tiny_experiment(folder: Path, world: dict[str, str], lm_dir: Path) -> Path:
    spec = base_spec(world, lm_dir, **{"train.steps": 2, "train.checkpoint_every": 0})
    return experiment_file(folder, spec)


@pytest.mark.slow
def test_a_grid_on_two_workers_runs_every_cell_once(tiny_world, tiny_lm_dirs, tmp_path):
    study = Study(
        "grid-two-workers",
        str(tiny_experiment(tmp_path, tiny_world, tiny_lm_dirs["llama"])),
        {"xattn_every": (1, 2), "special_embeddings": ("trainable", "frozen")},
        seeds=(0, 1),
    )
    assert study.cells()[0] == {"xattn_every": "1", "special_embeddings": "trainable"}
    done = run_study(study, workers=2, home=tmp_path)
    trials = done.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    cells = sorted(json.dumps(t.params, sort_keys=True) for t in trials)
    assert len(set(cells)) == 4  # every cell once, none twice
    assert {t.user_attrs["pid"] for t in trials} != {os.getpid()}  # run by the workers
    assert len({t.user_attrs["pid"] for t in trials}) == 2

    uri = default_uri(tmp_path)
    client = MlflowClient(uri)
    parent = done.user_attrs["mlflow_parent_run_id"]
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'"
    )
    assert len(children) == 8  # 4 cells x 2 seeds
    base_config_id = study.base_spec(tmp_path).config_id
    for trial in trials:  # ids on both sides
        for seed in (0, 1):
            run = client.get_run(trial.user_attrs[f"run_id/seed{seed}"])
            assert run.data.tags["trial"] == str(trial.number)
            assert run.data.tags["axis.xattn_every"] == trial.params["xattn_every"]
            assert run.data.tags["trial_state"] == "COMPLETE"  # mirrored from Optuna
            assert run.data.tags["base_config_id"] == base_config_id
    finished = client.get_run(parent)
    assert finished.info.status == "FINISHED" and finished.data.metrics["trials_complete"] == 4

    again = run_study(study, workers=1, home=tmp_path)  # a resumed study continues, not restarts
    assert len(again.get_trials()) == 4
    assert client.get_run(parent).info.status == "FINISHED"

    from typer.testing import CliRunner

    from workbench.cli import app

    assert "grid-two-workers" in STUDIES
    out = CliRunner().invoke(
        app, ["report", "grid-two-workers", "--home", str(tmp_path)], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    report = (tmp_path / "reports" / "grid-two-workers" / "report.md").read_text()
    assert "| axis | value | baseline | n | mean |" in report and "p_holm" in report
    html = (tmp_path / "reports" / "grid-two-workers" / "report.html").read_text()
    plots = list((tmp_path / "reports" / "grid-two-workers").glob("*.png"))
    assert len(plots) >= 4 and html.count("data:image/png;base64,") == len(plots)
    artifacts = [a.path for a in client.list_artifacts(parent, "report")]
    assert "report/report.html" in artifacts and "report/learning_curves.png" in artifacts


def test_holm_adjusts_for_multiple_comparisons():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_a_pruned_trial_is_pruned_in_optuna_and_killed_in_mlflow(
    tiny_world, tiny_lm_dirs, tmp_path, monkeypatch
):
    spec = base_spec(
        tiny_world, tiny_lm_dirs["llama"],
        **{"train.steps": 2, "train.checkpoint_every": 0, "eval.every": 1,
           "eval.data": tiny_world["eval"], "eval.tasks": "vqa", "eval.shots": "0",
           "eval.subset": 2},
    )  # fmt: skip
    path = experiment_file(tmp_path, spec, "eval_experiment")
    study = Study(
        "pruned", str(path), {"xattn_every": (1, 2)}, seeds=(0,),
        objective="eval/vqa/0shot", direction="maximize", pruner="median",
    )  # fmt: skip
    # Optuna's median rule is Optuna's; what is ours is the plumbing: prune the second trial
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: self.number == 1)
    from workbench.search import open_study
    from workbench.track import study_parent_run

    open_study(study, storage_for(None, tmp_path))
    uri = default_uri(tmp_path)
    parent = study_parent_run(uri, study.mlflow_experiment(tmp_path), study.name, 0, tmp_path)
    work(study, storage=None, home=tmp_path, uri=uri, parent_run_id=parent)
    trials = optuna.load_study(study_name="pruned", storage=storage_for(None, tmp_path)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert trials[1].intermediate_values  # reported before the pruner stopped it
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_run(parent).info.experiment_id], "tags.trial = '1'")
    assert len(runs) == 1 and runs[0].info.status == "KILLED"
    assert runs[0].data.tags["stopped"].startswith("pruned by the median pruner")
    assert runs[0].data.tags["trial_state"] == "PRUNED"  # the trial's state, mirrored


@pytest.mark.distributed
def test_an_fsdp_trial_is_one_torchrun_job(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(
        tiny_world, tiny_lm_dirs["llama"],
        **{"train.steps": 2, "train.checkpoint_every": 0, "train.strategy": "fsdp"},
    )  # fmt: skip
    path = experiment_file(tmp_path, spec, "fsdp_experiment")
    study = Study("fsdp-trial", str(path), {"xattn_every": (1,)}, seeds=(0,), nproc_per_node=2)
    done = run_study(study, home=tmp_path)
    (trial,) = done.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.value > 0
    run = MlflowClient(default_uri(tmp_path)).get_run(trial.user_attrs["run_id/seed0"])
    assert run.data.params["train.strategy"] == "fsdp" and run.data.tags["trial"] == "0"


def test_quality_versus_compute_gives_a_pareto_front(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(
        tiny_world, tiny_lm_dirs["llama"], **{"train.steps": 2, "train.checkpoint_every": 0}
    )
    path = experiment_file(tmp_path, spec, "pareto_experiment")
    study = Study("pareto", str(path), {"xattn_every": (1, 4)}, seeds=(0,), compute_objective=True)
    done = run_study(study, home=tmp_path)
    assert [len(t.values) for t in done.get_trials()] == [2, 2]  # (loss, seconds) per trial
    assert done.metric_names == ["final/loss/mmc4", "seconds"]  # optuna-dashboard's labels
    assert all(t.values[1] > 0 for t in done.get_trials())
    from workbench.search import pareto_front

    front = pareto_front(done)
    assert 1 <= len(front) <= 2 and {"objective", "seconds", "xattn_every"} <= set(front[0])


def test_loading_and_applying_axes_does_not_import_optuna():
    code = textwrap.dedent(
        """
        import sys
        import workbench.components  # what an experiment file's spec needs (no optuna)
        from workbench.axes import AXES, load_ablations
        from workbench.spec import RunSpec

        load_ablations()
        spec = AXES.get("xattn_every").apply(RunSpec(name="t"), "2")
        assert spec.model.xattn_every == 2
        assert "optuna" not in sys.modules, "loading the axes imported optuna"
        assert "workbench.search" not in sys.modules
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_studies_load_from_their_own_file_of_the_checkout_and_the_users_project(
    tmp_path, monkeypatch
):
    (tmp_path / "ablations").mkdir()
    (tmp_path / "ablations" / "studies.py").write_text(
        "from workbench.search import Study  # the re-export works too\n\n"
        "Study('from-the-working-directory', 'shapes_tiny', {'xattn_every': (1, 2)})\n"
    )
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'mine'\n")  # a project
    monkeypatch.setenv("WB_PROJECT", "")
    monkeypatch.chdir(tmp_path / "ablations")  # anywhere inside it
    studies = load_studies()
    assert "open_questions" in studies  # the checkout's ablations/studies.py
    assert "from-the-working-directory" in studies
    assert studies.get("open_questions").cells()[0]["xattn_every"] == "1"  # axes loaded first


def test_a_study_of_an_experiment_whose_spec_takes_no_home(tmp_path):
    path = tmp_path / "no_home.py"
    path.write_text(
        "from workbench.spec import RunSpec\n\n\ndef spec():\n    return RunSpec(name='no-home')\n"
    )
    study = Study("spec-without-home", str(path), {"xattn_every": (1, 2)},
                  overrides={"train.steps": 3})  # fmt: skip
    spec = study.base_spec(tmp_path)
    assert isinstance(spec, RunSpec) and spec.train.steps == 3
    assert study.mlflow_experiment(tmp_path) == "no-home"
    assert "spec-without-home" in STUDIES


def test_a_study_variant_keeps_the_name_and_the_registered_study():
    study = Study("variant-base", "shapes_tiny", {"xattn_every": (1, 2)})
    assert study_variant(study) is study
    more = study_variant(study, seeds=(0, 1, 2), sampler="tpe")
    assert more.name == "variant-base" and more.seeds == (0, 1, 2) and more.design == "tpe"
    assert STUDIES.get("variant-base") is study  # the definition stays registered
    assert study_from_json(study_json(more)) == more  # what a worker process runs
    with pytest.raises(SpecError, match="not grid or tpe"):
        study_variant(study, sampler="random")


def test_the_study_definition_lives_outside_the_optuna_package():
    import workbench.study

    assert Study is workbench.study.Study and STUDIES is workbench.study.STUDIES
    assert study_variant is workbench.study.study_variant
