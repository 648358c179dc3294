"""The reference prompts, and reading the answer out of generated text.

Captioning ``<image>Output:{caption}<|endofchunk|>``, VQA
``<image>Question:{q} Short answer:{a}<|endofchunk|>``, classification
``<image>Output:{label}<|endofchunk|>``; demonstrations joined with a newline for captioning and
VQA. Zero shots means two text-only demonstrations (their ``<image>`` removed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from workbench.eval.tasks import Dataset, Item

MEDIA, EOC = "<image>", "<|endofchunk|>"


def demo_text(dataset: Dataset, item: Item) -> str:
    if dataset.kind == "captioning":  # the reference strips a demonstration's caption
        return f"{MEDIA}Output:{item.answers[0].strip()}{EOC}"
    if dataset.kind == "vqa":
        return f"{MEDIA}Question:{item.question} Short answer:{item.answers[0]}{EOC}"
    return query_text(dataset, item) + f"{item.answers[0]}{EOC}"


def query_text(dataset: Dataset, item: Item) -> str:
    if dataset.kind == "vqa":
        return f"{MEDIA}Question:{item.question} Short answer:"
    if dataset.kind == "classification" and item.text:  # Hateful Memes
        return f"{MEDIA}is an image with: '{item.text}' written on it. Is it hateful? Answer:"
    return f"{MEDIA}Output:"


def prompt(dataset: Dataset, demos: Sequence[Item], query: Item, text_only_demos: bool) -> str:
    """The whole prompt: demonstrations, then the query."""
    texts = [demo_text(dataset, d) for d in demos]
    if text_only_demos:
        texts = [t.replace(MEDIA, "") for t in texts]
    joiner = "\n" if dataset.kind in ("captioning", "vqa") else ""
    return joiner.join([*texts, query_text(dataset, query)])


def postprocess(dataset: Dataset, text: str, eos: str = "") -> str:
    """The answer in the generated text, read as the reference's evaluation reads it.

    Generation stops at ``<|endofchunk|>`` (or the end of text), and the reference decodes with
    the special tokens skipped, so the text is cut there and ``<image>`` removed. Then VQA
    answers end before the first ``Question``, ``Answer`` or ``Short`` (the model starting
    another demonstration) and before the first ``", "``; captions end before the first
    ``Output`` and lose their double quotes. Surrounding whitespace goes (the metrics ignore it).
    """
    text = text.split(EOC)[0]
    if eos:
        text = text.split(eos)[0]
    text = text.replace(MEDIA, "")
    if dataset.kind == "vqa":
        text = re.split("Question|Answer|Short", text, maxsplit=1)[0]
        text = text.split(", ", 1)[0]
    elif dataset.kind == "captioning":
        text = text.split("Output", 1)[0].replace('"', "")
    return text.strip()
