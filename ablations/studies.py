"""The paper's open questions as studies of the shapes baseline (``wb search STUDY``).

Every configuration runs with the same seeds, and a seed fixes the data order, so differences
between configurations are paired by seed; every run is evaluated on the same items, so they are
paired by item too. Runs are shortened to 500 steps: the baseline starts to read the images
between steps 250 and 500 (4-shot rank accuracy 0.22 at 250, 0.44 at 500, 0.50 at 1,000, against
0.28 for the majority answer), so shorter runs compare models that do not use images yet. The
objective is rank classification of the held-out shapes questions (``vqa_rank``: each question's
closed answer set ranked by log-likelihood after 4 demonstrations), evaluated every 250 steps
and at the end at 0, 4 and 8 shots (16 too for the special embeddings, whose question is about
many shots); every evaluation also gives the held-out validation losses (``val/loss/laion``,
``val/loss/mmc4``), measured on the same pairs and documents whatever a variant's mixture or
filter. Training losses are not comparable across mixtures or filters, which change the data.

``controls`` proves the instrument: a no-op variant must come out equal to the baseline, and
training on LAION captions that describe other scenes must come out worse.
"""

from workbench.study import Study

SHORT = {
    "train.steps": 500,
    "train.checkpoint_every": 0,
    "train.log_every": 10,
    "eval.every": 250,
    "eval.tasks": ("vqa_rank",),
    "eval.shots": (0, 4, 8),
    "eval.subset": 200,
}
RANK = {"objective": "eval/vqa_rank/4shot", "direction": "maximize"}
MANY_SHOTS = {**SHORT, "eval.shots": (0, 4, 8, 16)}

Study(
    "special_embeddings", "shapes_tiny",
    {"special_embeddings": ("trainable", "frozen", "input_only", "init_mean", "init_random",
                            "init_copy", "lr_x10", "lr_x0.1")},
    overrides=MANY_SHOTS, doc="Do <image> and <|endofchunk|> need trainable embeddings?", **RANK,
)  # fmt: skip
Study(
    "xattn_density", "shapes_tiny", {"xattn_every": (1, 2, 4)},
    overrides=SHORT, doc="Cross-attention before every 1st, 2nd or 4th decoder layer.", **RANK,
)  # fmt: skip
Study(
    "xattn_scale", "shapes_tiny", {"scale": ("tiny", "small"), "xattn_every": (1, 2)},
    overrides=SHORT, doc="Does the best cross-attention interval change with the model's scale?",
    **RANK,
)  # fmt: skip
Study(
    "xattn_density_small", "shapes_small", {"xattn_every": (1, 2, 3, 6)},
    overrides=SHORT, doc="Cross-attention intervals of the 6-layer small LM (3 included).", **RANK,
)  # fmt: skip
Study(
    "mmc4_threshold", "shapes_tiny", {"mmc4_threshold": (0.24, 0.28, 0.32)},
    overrides=SHORT, doc="How strict the per-image similarity filter of MMC4 should be.", **RANK,
)  # fmt: skip
Study(
    "mixture", "shapes_tiny", {"mixture": ("2:1", "1:1", "1:2", "laion_only", "mmc4_only")},
    overrides=SHORT, doc="How each step divides its samples between LAION and MMC4.", **RANK,
)  # fmt: skip
Study(
    "controls", "shapes_tiny", {"control": ("none", "noop", "laion_mismatched")},
    objective="val/loss/laion", direction="minimize", seeds=(0, 1, 2), overrides=SHORT,
    doc="A/A (no-op variant) and a planted effect (mismatched LAION captions).",
)  # fmt: skip
# The flagship study must finish within an hour on 2 CPU cores: one variant per question (the
# mixture question asked with LAION only, the cheapest run), 5 configurations x 2 seeds of
# about 5 minutes each, evaluated once, at the end (6 configurations evaluated at 250 and 500
# steps ran at about 5.3 minutes a run: 63 minutes). The evaluation before the first step is
# left out: every configuration here is the same model there (the gates start at 0, the
# special rows alike), 0.215 at 4 shots against a majority floor of 0.28. The studies of each
# axis have the other variants.
Study(
    "open_questions",
    "shapes_tiny",
    {
        "special_embeddings": ("trainable", "frozen"),
        "xattn_every": (1, 4),
        "mmc4_threshold": (0.24, 0.32),
        "mixture": ("2:1", "laion_only"),
    },
    design="one_at_a_time",
    overrides={**SHORT, "eval.every": 500, "eval.at_start": False},
    **RANK,
    doc="All four questions: the baseline and each axis's variants with the others at baseline.",
)
