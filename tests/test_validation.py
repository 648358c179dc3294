"""Held-out validation loss: the same items for every run whatever its mixture or MMC4 filter,
each item's loss, and the loss a run logs."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch
from helpers import base_spec

from workbench.eval.validation import per_row_loss, read_validation, validation_loss
from workbench.model import create_model_and_transforms
from workbench.model.flamingo import token_loss_sum
from workbench.spec import SpecError
from workbench.train.loop import train


def test_per_row_loss_sums_to_the_batch_loss():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=generator)
    labels = torch.randint(0, 7, (3, 5), generator=generator)
    labels[0, 2:] = -100  # a shorter row
    labels[2, :] = -100  # a row with nothing labelled
    sums, counts = per_row_loss(logits, labels)
    assert counts.tolist() == [1, 4, 0] and float(sums[2]) == 0.0
    assert float(sums.sum()) == pytest.approx(float(token_loss_sum(logits, labels)), rel=1e-6)
    by_hand = -torch.log_softmax(logits[1, :-1], -1).gather(-1, labels[1, 1:, None]).sum()
    assert float(sums[1]) == pytest.approx(float(by_hand), rel=1e-6)


def test_every_variant_reads_the_same_items(tiny_world, tiny_lm_dirs):
    lm = str(tiny_lm_dirs["llama"])
    model, processor, tokenizer = create_model_and_transforms("wb-tiny-vit", lm)
    folder = Path(tiny_world["validation"])
    keys = []
    for threshold, tokens in ((0.2, 64), (0.32, 64), (0.2, 64)):
        spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{
            "data.mmc4_filter.threshold": threshold, "data.mmc4.max_tokens": tokens})  # fmt: skip
        batches = read_validation(spec.data, folder, tokenizer, processor, batch_size=5)
        keys.append({name: [k for b in bs for k in b.keys] for name, bs in batches.items()})
    assert keys[0] == keys[1] == keys[2]
    assert len(keys[0]["laion"]) == 24 and 0 < len(keys[0]["mmc4"]) <= 16
    metrics, items = validation_loss(model, batches, torch.device("cpu"))
    assert set(metrics) == {"val/loss/laion", "val/loss/mmc4"}
    for name in ("laion", "mmc4"):
        rows = items.filter(pl.col("source") == name)
        mean = rows["loss_sum"].sum() / rows["tokens"].sum()
        assert metrics[f"val/loss/{name}"] == pytest.approx(mean)
    with pytest.raises(SpecError, match="holds no laion"):
        read_validation(spec.data, folder / "absent", tokenizer, processor)


def test_a_run_logs_validation_loss_and_its_items(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{
        "train.steps": 4, "train.checkpoint_every": 0, "eval.every": 2,
        "eval.data": tiny_world["eval"], "eval.tasks": ("vqa_rank",), "eval.shots": (0, 2),
        "eval.subset": 4, "eval.validation": tiny_world["validation"]})  # fmt: skip
    result = train(spec, home=tmp_path, show_progress=False, track=False)
    logged = [h for h in result.history if "val/loss/laion" in h]
    assert len(logged) == 2  # steps 2 and 4 (step 0 is logged before the first step)
    assert logged[-1]["val/loss/laion"] > 0 and logged[-1]["val/loss/mmc4"] > 0
    assert "eval/vqa_rank/2shot" in logged[-1] and "eval/vqa_rank/2shot/logp_right" in logged[-1]
    files = sorted((result.run_dir / "eval").glob("validation_step*.parquet"))
    assert [f.name for f in files][-1] == "validation_step00000004.parquet"
    items = pl.read_parquet(files[-1])
    assert items.height == 24 + items.filter(pl.col("source") == "mmc4").height


def test_a_run_can_evaluate_on_the_validation_sets_alone(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"], **{
        "train.steps": 2, "train.checkpoint_every": 0, "eval.every": 2, "eval.tasks": (),
        "eval.validation": tiny_world["validation"]})  # fmt: skip
    result = train(spec, home=tmp_path, show_progress=False, track=False)
    logged = [h for h in result.history if "val/loss/laion" in h]
    assert len(logged) == 1 and not any(k.startswith("eval/") for k in logged[0])
    assert (result.run_dir / "eval" / "validation_step00000002.parquet").exists()
