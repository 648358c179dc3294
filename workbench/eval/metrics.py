"""Metrics of the reference protocol: CIDEr, VQA accuracy, classification accuracy and ROC AUC.

- CIDEr-D is pycocoevalcap's; captions are tokenized by its PTB tokenizer (Stanford CoreNLP, which
  needs Java) as in the COCO evaluation server, or, without Java, by :func:`simple_tokenize`,
  which applies the same lower-casing and punctuation removal (``cider(..., tokenizer=...)``
  reports which one ran). Each image has its own score; the corpus score is their mean.
- VQA accuracy follows the VQA challenge's evaluation as OpenFlamingo runs it (``vqa_metric.py``):
  the prediction and every annotator's answer normalised by :func:`normalize_answer`, and
  ``min(1, matches / 3)`` averaged over the ten leave-one-annotator-out subsets.
"""

from __future__ import annotations

import re
import shutil
import statistics
from collections.abc import Mapping, Sequence

from scipy import stats

# The official list: no apostrophe (``don't`` stays one word), no ``$ # % ^ & * | ~`` (``$1000``
# stays ``$1000``); ``.`` is handled by _PERIOD_STRIP.
_PUNCTUATION = [*';/[]"{}()=+\\_-><@`,?!']
_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")
# As the official evaluation writes it: ``(?!<=\d)`` is a look-ahead that never fails, so this
# removes every period not followed by a digit ("3.5" keeps its point, "yes." loses it). The
# official code passes ``re.UNICODE`` (32) where ``sub`` takes its count: at most 32 go.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_PERIOD_STRIP_COUNT = int(re.UNICODE)
_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
# The official table, odd entries included ("somebody'd" becomes "somebodyd"; the capitalised
# keys never match, words being lower-cased first).
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip


def normalize_answer(answer: str) -> str:
    """An answer as the VQA evaluation compares it: punctuation, then number words, articles
    and contractions word by word."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    # a punctuation mark is dropped when it touches a space somewhere in the answer, or when the
    # answer has a comma between digits ("1,000"); otherwise it becomes a space
    drop = _COMMA_NUMBER.search(text) is not None
    out = text
    for p in _PUNCTUATION:
        out = out.replace(p, "" if drop or p + " " in text or " " + p in text else " ")
    out = _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)
    words = [_NUMBERS.get(w, w) for w in out.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The VQA score of one prediction against the annotators' answers (usually ten): the mean,
    over leaving each annotator out, of ``min(1, matches among the others / 3)``.

    One answer alone (no annotator left to compare with) is scored by exact match; the official
    evaluation would score every prediction 0 there.
    """
    if not answers:
        raise ValueError("a VQA question needs its annotators' answers")
    pred = normalize_answer(prediction)
    gts = [normalize_answer(a) for a in answers]
    if len(gts) == 1:
        return float(pred == gts[0])
    matches = sum(g == pred for g in gts)
    # leaving out an annotator who gave ``pred`` leaves matches - 1 among the others
    scores = [min(1.0, (matches - (g == pred)) / 3) for g in gts]
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
    """Corpus CIDEr-D of ``predictions`` against ``references`` (both by example id): the mean of
    :func:`cider_per_item`.

    Returns:
        (score, the tokenizer used: ``"ptb"`` or ``"simple"``).
    """
    per_item, used = cider_per_item(predictions, references, tokenizer)
    return statistics.fmean(per_item.values()), used


def cider_per_item(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    tokenizer: str = "auto",
) -> tuple[dict[str, float], str]:
    """Each example's CIDEr-D (the document frequencies come from all of ``references``).

    Returns:
        ({example id: score}, the tokenizer used: ``"ptb"`` or ``"simple"``).
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
    _, scores = Cider().compute_score(gts, res)  # in the order of gts' keys
    return {k: float(s) for k, s in zip(gts, scores, strict=True)}, "ptb" if use_ptb else "simple"


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
