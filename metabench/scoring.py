"""Metrics: small pure functions from (prediction, reference) to a score in [0, 1].

- exact_match: the prediction's first non-empty line equals the target after
  normalisation (whitespace collapsed, trailing punctuation and surrounding
  quotes dropped). Models often run on past the answer; the first line is the
  answer.
- token_accuracy: the paper's token-level accuracy, position by position over
  the target's whitespace-separated words (tokenizer-independent, so models
  with different tokenizers are comparable). Missing words count as wrong.
- string_match_all / string_match_any: RULER's metrics: the fraction of
  references found anywhere in the prediction (case-insensitive), and whether
  any is.
- sequence_ratio: OpenAI-MRCR's grade: 0 unless the prediction (surrounding
  whitespace stripped) starts with the sample's required prefix
  (`info["prefix"]`); otherwise difflib's SequenceMatcher ratio between the
  prediction and the target, both without the prefix.
"""

from __future__ import annotations

import json
from difflib import SequenceMatcher
from typing import Callable, Mapping, Sequence

_TRAILING = ".,;:!?"
_QUOTES = "\"'`"


def first_line(prediction: str) -> str:
    for line in prediction.strip().splitlines():
        if line.strip():
            return line
    return ""


def normalize(text: str) -> str:
    s = " ".join(text.split())
    s = s.rstrip(_TRAILING).strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in _QUOTES:
        s = s[1:-1].strip()
    return s


def exact_match(prediction: str, target: str) -> float:
    return float(normalize(first_line(prediction)) == normalize(target))


def token_accuracy(prediction: str, target: str) -> float:
    want = normalize(target).split()
    if not want:
        return float(not normalize(first_line(prediction)))
    got = normalize(first_line(prediction)).split()
    hits = sum(1 for i, w in enumerate(want) if i < len(got) and got[i] == w)
    return hits / len(want)


def string_match_all(prediction: str, references: Sequence[str]) -> float:
    if not references:
        raise ValueError("string_match_all needs at least one reference")
    p = prediction.lower()
    return sum(r.lower() in p for r in references) / len(references)


def string_match_any(prediction: str, references: Sequence[str]) -> float:
    if not references:
        raise ValueError("string_match_any needs at least one reference")
    p = prediction.lower()
    return float(any(r.lower() in p for r in references))


def sequence_ratio(prediction: str, target: str, prefix: str) -> float:
    reply = prediction.strip()
    if not reply.startswith(prefix):
        return 0.0
    return SequenceMatcher(None, reply.removeprefix(prefix), target.removeprefix(prefix)).ratio()


def _info(sample: Mapping) -> Mapping:
    """A sample's info: a dict, or its JSON text as lm-eval docs carry it."""
    info = sample["info"]
    return json.loads(info) if isinstance(info, str) else info


METRICS: dict[str, Callable[[str, Mapping], float]] = {
    "exact_match": lambda pred, s: exact_match(pred, s["target"]),
    "token_accuracy": lambda pred, s: token_accuracy(pred, s["target"]),
    "string_match_all": lambda pred, s: string_match_all(pred, s["answers"]),
    "string_match_any": lambda pred, s: string_match_any(pred, s["answers"]),
    "sequence_ratio": lambda pred, s: sequence_ratio(pred, s["target"], _info(s)["prefix"]),
}


def score(sample: Mapping, prediction: str) -> dict[str, float]:
    """Every metric the sample names, for one prediction."""
    return {name: METRICS[name](prediction, sample) for name in sample["metrics"]}
