"""LAION-style image-text pairs: ``<image>{caption}<|endofchunk|>{eos}``, at most 32 tokens."""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.data.batch import Example, process_images
from workbench.data.formats import decode_image, parse_pair
from workbench.spec import LaionOptions


class LaionSource:
    """Turns raw LAION samples into examples (raises ``BadRecord`` for broken ones)."""

    name = "laion"

    def __init__(self, tokenizer: Any, image_processor: Any, options: LaionOptions | None = None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.options = options or LaionOptions()

    def example(self, sample: dict[str, Any], rng: np.random.Generator) -> Example | None:
        pair = parse_pair(sample)
        image = decode_image(pair.image)
        text = f"<image>{pair.caption.strip()}<|endofchunk|>{self.tokenizer.eos_token}"
        ids = self.tokenizer(
            text, max_length=self.options.max_tokens, truncation=True, return_tensors="pt"
        ).input_ids[0]
        images = process_images([image], self.image_processor, rng, self.options.hflip_prob)
        return Example(images, ids, self.name, pair.key)
