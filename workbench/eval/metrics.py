"""Metrics of the reference protocol: CIDEr, VQA accuracy, classification accuracy and ROC AUC.

- CIDEr-D is pycocoevalcap's; captions are tokenized by its PTB tokenizer (Stanford CoreNLP, which
  needs Java) as in the COCO evaluation server, or, without Java, by :func:`simple_tokenize`,
  which applies the same lower-casing and punctuation removal (``cider(..., tokenizer=...)``
  reports which one ran).
- VQA accuracy follows the VQA challenge's evaluation: answers normalised (punctuation, digits
  for number words, articles, contractions), and ``min(1, matches / 3)`` averaged over the ten
  leave-one-annotator-out subsets.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence

from scipy import stats

_PUNCTUATION = [*";/[]\"+_-#$%^&*()=?@`'!<>{}|~,", "\\"]  # ``.`` is handled apart
_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # as the official evaluation writes it
_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itll": "it'll", "let's": "let's", "maam": "ma'am",
    "mightnt": "mightn't", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "shant": "shan't",
    "shed": "she'd", "shes": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "somebodys": "somebody's", "someones": "someone's", "somethings": "something's",
    "thats": "that's", "thered": "there'd", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "wasnt": "wasn't", "wed": "we'd", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "yall": "y'all", "youd": "you'd", "youll": "you'll", "youre": "you're", "youve": "you've",
}  # fmt: skip


def normalize_answer(answer: str) -> str:
    """An answer as the VQA evaluation compares it."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    # punctuation: dropped next to spaces or digits, otherwise replaced by a space
    out = text
    for p in _PUNCTUATION:
        if (p + " " in text or " " + p in text) or re.search(_COMMA_NUMBER, text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD_STRIP.sub("", out)
    words = []
    for word in out.lower().split():
        word = _NUMBERS.get(word, word)
        if word not in _ARTICLES:
            words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The VQA score of one prediction against the annotators' answers (usually ten)."""
    if not answers:
        raise ValueError("a VQA question needs its annotators' answers")
    pred = normalize_answer(prediction)
    gts = [normalize_answer(a) for a in answers]
    if len(gts) == 1:
        return float(pred == gts[0])
    scores = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1 :]
        scores.append(min(1.0, sum(g == pred for g in others) / 3))
    return sum(scores) / len(scores)


def simple_tokenize(text: str) -> str:
    """Lower-case, punctuation removed, as the PTB tokenizer's output for plain captions."""
    return " ".join(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower()))


def java_available() -> bool:
    return shutil.which("java") is not None


def cider(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    tokenizer: str = "auto",
) -> tuple[float, str]:
    """Corpus CIDEr-D of ``predictions`` against ``references`` (both by example id).

    Returns:
        (score, the tokenizer used: ``"ptb"`` or ``"simple"``).
    """
    from pycocoevalcap.cider.cider import Cider

    if set(predictions) != set(references):
        raise ValueError("predictions and references must cover the same ids")
    use_ptb = tokenizer == "ptb" or (tokenizer == "auto" and java_available())
    if use_ptb:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        ptb = PTBTokenizer()
        res = ptb.tokenize({k: [{"caption": v}] for k, v in predictions.items()})
        gts = ptb.tokenize({k: [{"caption": c} for c in refs] for k, refs in references.items()})
    else:
        res = {k: [simple_tokenize(v)] for k, v in predictions.items()}
        gts = {k: [simple_tokenize(c) for c in refs] for k, refs in references.items()}
    score, _ = Cider().compute_score(gts, res)
    return float(score), "ptb" if use_ptb else "simple"


def accuracy(predictions: Sequence[str], labels: Sequence[str]) -> float:
    if len(predictions) != len(labels) or not labels:
        raise ValueError("accuracy needs as many predictions as labels, at least one")
    return sum(p == y for p, y in zip(predictions, labels, strict=True)) / len(labels)


def roc_auc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """Area under the ROC curve (ties count half): the Mann-Whitney U over both classes."""
    pos = [s for s, p in zip(scores, positives, strict=True) if p]
    neg = [s for s, p in zip(scores, positives, strict=True) if not p]
    if not pos or not neg:
        raise ValueError("ROC AUC needs both positive and negative examples")
    u = stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic
    return float(u) / (len(pos) * len(neg))
