"""MMC4-style interleaved documents, processed as the reference does, with its image-order bug
fixed.

Per document: drop images under ``min_image_bytes``; assign images to sentences and filter them
(the ``mmc4_filter`` component); put ``<|endofchunk|><image>`` before each kept image's sentence;
drop the first ``<|endofchunk|>``; remove one space before ``<|endofchunk|>`` and one on each
side of ``<image>``; end with ``<|endofchunk|>{eos}``; truncate to 256 tokens; keep at most 6
images. Documents without a usable image (none at all, too small, or none above the threshold)
are dropped, not counted as broken; single-image documents are kept with probability 0.5.
Images are stacked in the order their ``<image>`` tokens appear in the text (the reference
stacks them in image order, so image k can meet the wrong sentence).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.data.batch import Example, process_images
from workbench.data.filters import MMC4Filter, SimilarityThreshold
from workbench.data.formats import Dropped, decode_image, parse_document
from workbench.spec import MMC4Options

# The reference's whitespace clean-up, in its order: each removes one space at each occurrence,
# so "a  <image>" keeps a space (any other whitespace stays too).
_ONE_SPACE = (
    (" <|endofchunk|>", "<|endofchunk|>"),
    ("<image> ", "<image>"),
    (" <image>", "<image>"),
)


def interleave(sentences: list[str], image_sentences: list[int], eos_token: str) -> str:
    """The document text with ``<image>`` before each sentence in ``image_sentences``."""
    marked = list(sentences)
    for j in image_sentences:
        marked[j] = f"<|endofchunk|><image>{marked[j]}"
    text = " ".join(marked).replace("<|endofchunk|>", "", 1)
    for spaced, tight in _ONE_SPACE:
        text = text.replace(spaced, tight)
    return f"{text}<|endofchunk|>{eos_token}"


class MMC4Source:
    name = "mmc4"

    def __init__(
        self,
        tokenizer: Any,
        image_processor: Any,
        options: MMC4Options | None = None,
        mmc4_filter: MMC4Filter | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.options = options or MMC4Options()
        self.filter = mmc4_filter or SimilarityThreshold()
        self.media_token_id = int(tokenizer.convert_tokens_to_ids("<image>"))

    def example(self, sample: dict[str, Any], rng: np.random.Generator) -> Example:
        """Raises ``BadRecord`` for a broken document, :class:`Dropped` for a filtered one."""
        doc = parse_document(sample)
        options = self.options
        usable = [
            i for i, data in enumerate(doc.images) if data and len(data) >= options.min_image_bytes
        ]
        if not usable:
            raise Dropped("no_usable_images")
        pairs = [(usable[i], j) for i, j in self.filter(doc.similarity[usable])]
        if not pairs:
            raise Dropped("no_images_above_threshold")
        pairs.sort(key=lambda pair: pair[1])  # text order: the k-th <image> gets the k-th image
        pairs = pairs[: options.max_images]

        text = interleave(doc.sentences, [j for _, j in pairs], self.tokenizer.eos_token)
        ids = self.tokenizer(
            text, max_length=options.max_tokens, truncation=True, return_tensors="pt"
        ).input_ids[0]
        num_images = int((ids == self.media_token_id).sum())
        if num_images < options.min_images:
            raise Dropped("too_few_images_after_truncation")
        if num_images == 1 and rng.random() >= options.single_image_keep_prob:
            raise Dropped("single_image_dropped")
        if num_images == 1 and int(ids[-1]) == self.media_token_id:
            raise Dropped("image_token_at_end")  # truncation left no text to learn from
        images = [decode_image(doc.images[i]) for i, _ in pairs[:num_images]]  # type: ignore[arg-type]
        tensor = process_images(images, self.image_processor, rng, options.hflip_prob)
        return Example(tensor, ids, self.name, doc.key)
