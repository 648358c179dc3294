"""The paper's open questions as studies of the shapes baseline (``wb search STUDY``).

Every configuration runs with the same seeds, and a seed fixes the data order, so differences
between configurations are paired. Runs are shortened to 150 steps so that a study fits on a
laptop; the objective is the final MMC4 training loss, except for the mixture, whose variants
see different data: there the objective is few-shot VQA accuracy on held-out scenes.
"""

from workbench.search import Study

SHORT = {"train.steps": 150, "train.checkpoint_every": 0, "train.log_every": 10}

Study(
    "special_embeddings", "shapes_tiny", {"special_embeddings": ("trainable", "frozen")},
    overrides=SHORT, doc="Do <image> and <|endofchunk|> need trainable embeddings?",
)  # fmt: skip
Study(
    "xattn_density", "shapes_tiny", {"xattn_every": (1, 2, 4)},
    overrides=SHORT, doc="Cross-attention before every 1st, 2nd or 4th decoder layer.",
)  # fmt: skip
Study(
    "mmc4_threshold", "shapes_tiny", {"mmc4_threshold": (0.24, 0.28, 0.32)},
    overrides=SHORT, doc="How strict the per-image similarity filter of MMC4 should be.",
)  # fmt: skip
Study(
    "mixture", "shapes_tiny", {"mixture": ("2:1", "1:1", "1:2", "laion_only", "mmc4_only")},
    overrides=SHORT, doc="How each step divides its samples between LAION and MMC4.",
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
    doc="All four questions: the baseline and each axis's variants with the others at baseline.",
)
