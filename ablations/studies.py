"""The paper's open questions as studies of the shapes baseline (``wb search STUDY``).

Every configuration runs with the same seeds, and a seed fixes the data order, so differences
between configurations are paired. Runs are shortened to 150 steps so that a study fits on a
laptop. The objective is 4-shot VQA accuracy on 100 held-out shapes questions at the end of the
run: training losses are not comparable across mixtures or filters, which change the data.
"""

from workbench.study import Study

SHORT = {
    "train.steps": 150,
    "train.checkpoint_every": 0,
    "train.log_every": 10,
    "eval.every": 150,
    "eval.shots": (4,),
    "eval.subset": 100,
}
VQA = {"objective": "eval/vqa/4shot", "direction": "maximize"}

Study(
    "special_embeddings", "shapes_tiny", {"special_embeddings": ("trainable", "frozen")},
    overrides=SHORT, doc="Do <image> and <|endofchunk|> need trainable embeddings?", **VQA,
)  # fmt: skip
Study(
    "xattn_density", "shapes_tiny", {"xattn_every": (1, 2, 4)},
    overrides=SHORT, doc="Cross-attention before every 1st, 2nd or 4th decoder layer.", **VQA,
)  # fmt: skip
Study(
    "mmc4_threshold", "shapes_tiny", {"mmc4_threshold": (0.24, 0.28, 0.32)},
    overrides=SHORT, doc="How strict the per-image similarity filter of MMC4 should be.", **VQA,
)  # fmt: skip
Study(
    "mixture", "shapes_tiny", {"mixture": ("2:1", "1:1", "1:2", "laion_only", "mmc4_only")},
    overrides=SHORT, doc="How each step divides its samples between LAION and MMC4.", **VQA,
)  # fmt: skip
Study(
    "open_questions",
    "shapes_tiny",
    {
        "special_embeddings": ("trainable", "frozen"),
        "xattn_every": (1, 2, 4),
        "mmc4_threshold": (0.24, 0.32),
        "mixture": ("2:1", "1:1"),
    },
    design="one_at_a_time",
    overrides=SHORT,
    **VQA,
    doc="All four questions: the baseline and each axis's variants with the others at baseline.",
)
