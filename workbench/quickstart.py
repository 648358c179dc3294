"""The first things a new user runs: ``wb quickstart`` (the shapes world, its tiny backbones,
the baseline and one variant of each open question, compared) and ``wb demo`` (a tiny random
Flamingo, saved and loaded like real weights, generating)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from workbench import experiments, runs, track
from workbench.axes import apply_all
from workbench.report import DEFAULT_METRICS, compare, runs_frame
from workbench.spec import RunSpec
from workbench.train.result import RunOptions, home_dir

#: The quickstart's one variant per axis of the paper's open questions.
QUICKSTART_VARIANTS = {
    "special_embeddings": "frozen",
    "xattn_every": "2",
    "mixture": "1:1",
    "mmc4_threshold": "0.32",
}
#: VQA test questions (of 971) in the evaluation after the last step (4 shots, one demonstration
#: seed): about 0.03 s a question on one core, so ~6 s a run beside ~140 s for 200 steps.
EVAL_SUBSET = 200


def quickstart_spec(home: str | Path | None = None, steps: int = 200) -> RunSpec:
    """The quickstart's baseline: ``shapes_tiny`` for ``steps`` steps, no checkpoints, and a
    4-shot VQA evaluation of :data:`EVAL_SUBSET` questions at the end."""
    spec = experiments.load("shapes_tiny").build(home_dir(home))
    return spec.override({"train.steps": steps, "train.checkpoint_every": 0, "eval.every": steps,
                          "eval.tasks": ("vqa",), "eval.subset": EVAL_SUBSET})  # fmt: skip


def quickstart(
    steps: int = 200,
    seeds: Sequence[int] = (0,),
    home: str | Path | None = None,
    say: Callable[[str], None] = print,
) -> pl.DataFrame:
    """Runs the quickstart (runs already finished are kept) and returns its comparison:
    :func:`~workbench.report.compare` of its own runs, on the training losses and the VQA
    accuracy (render it with :func:`~workbench.report.render_comparison`)."""
    where = home_dir(home)
    loaded = experiments.load("shapes_tiny")
    say(f"[1/3] shapes world and tiny backbones under {where} (cached after the first time)")
    loaded.build_inputs(where)
    base = quickstart_spec(where, steps)
    plan: list[tuple[str, dict[str, str]]] = [("baseline", {})]
    plan += [(f"{axis}={value}", {axis: value}) for axis, value in QUICKSTART_VARIANTS.items()]
    total, done = len(plan) * len(seeds), 0
    for label, choices in plan:
        resolved = runs.Resolved(loaded, apply_all(base, choices), choices, base)
        for seed in seeds:
            done += 1
            say(f"[2/3] run {done}/{total}: {label}, seed {seed}, {steps} steps")
            if runs.finished(resolved.spec.override({"train.seed": seed}), where) is not None:
                say("      already done")
                continue
            options = RunOptions(home=where, tags=resolved.tags)
            runs.execute(resolved.spec.override({"train.seed": seed}), options)
    evals = [f"eval/{task}/{k}shot" for task in base.eval.tasks for k in base.eval.shots]
    say("[3/3] comparison (training losses and VQA accuracy, paired by seed with the baseline)")
    frame = runs_frame(track.default_uri(where), base.name)
    return compare(frame.filter(pl.col("base_config_id") == base.config_id),
                   [*DEFAULT_METRICS, *evals])  # fmt: skip


def demo(family: str = "llama", home: str | Path | None = None, max_new_tokens: int = 12,
         say: Callable[[str], None] = print) -> None:  # fmt: skip
    """Builds a tiny random Flamingo over an LM of ``family`` (saved and loaded like real
    weights) and generates from a two-image prompt."""
    import torch
    from PIL import Image

    from workbench.model import create_model_and_transforms
    from workbench.model.lm import LM_ADAPTERS
    from workbench.model.tiny import save_tiny_lm

    LM_ADAPTERS.get(family)  # an unknown family fails listing the known ones
    lm_dir = save_tiny_lm(family, home_dir(home) / "tiny" / family)
    torch.manual_seed(0)
    model, processor, tokenizer = create_model_and_transforms("wb-tiny-vit", str(lm_dir))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    say(f"model: wb-tiny-vit + tiny {family} from {lm_dir}")
    say(f"parameters: {total:,} ({trainable:,} trainable)")
    pictures = [Image.new("RGB", (48, 48), colour) for colour in ("red", "blue")]
    images = torch.stack([processor(p) for p in pictures])[None]  # (1, 2, 3, H, W)
    prompt = "<image>Output: a red square.<|endofchunk|><image>Output:"
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids
    out = model.eval().generate(images, None, input_ids, max_new_tokens=max_new_tokens)
    say(f"prompt: {prompt}")
    new_tokens = tokenizer.decode(out[0, input_ids.shape[1] :])
    say(f"generated (untrained weights, so arbitrary text): {new_tokens!r}")
