"""Metrics: small pure functions from (prediction, reference) to a score in [0, 1].

The prediction is the answer only: a reasoning model's thinking has been
taken out before scoring (reasoning.py).

- exact_match: the answer `extract_answer` finds equals the target after
  normalisation (whitespace collapsed, trailing punctuation, surrounding
  quotes and markdown emphasis dropped). Chat models wrap answers
  ("The answer is: X.", `**X**`, "Here it is:" then X); base models run on
  past the answer, so only the first line (or the line after an
  introduction, or a last line that states the answer) is ever read.
- exact_match_strict: the first non-empty line equals the target after the
  same normalisation without emphasis removal: the metric before answer
  extraction, scored beside exact_match so base-model numbers stay comparable.
- token_accuracy: the paper's token-level accuracy, position by position over
  the target's whitespace-separated words (tokenizer-independent, so models
  with different tokenizers are comparable). Missing words count as wrong.
- string_match_all / string_match_any: RULER's metrics: the fraction of
  references found anywhere in the prediction (case-insensitive), and whether
  any is. With a single reference that holds a digit (a number, a UUID), a
  prediction naming two or more distinct values of its shape (same length,
  letters and digits in the same places as separators) scores 0: listing
  candidates is not answering.
- sequence_ratio: OpenAI-MRCR's grade: 0 unless the prediction (surrounding
  whitespace stripped) starts with the sample's required prefix
  (`info["prefix"]`); otherwise difflib's SequenceMatcher ratio between the
  prediction and the target, both without the prefix.

`extract_answer(prediction)`, first rule that applies:

1. the first non-empty line holds an answer marker ("answer is", "answer:",
   "final answer:", any case): the text after the first marker on that line;
2. the first non-empty line holds bold spans (`**X**` or `__X__`): their one
   distinct value; several distinct values are several candidates: no answer;
3. the first non-empty line ends with ":" (an introduction): the next
   non-empty line;
4. the first non-empty line is a sentence of three or more words (ends with
   ".", "!" or "?") and the last non-empty line holds an answer marker: the
   text after its last marker (a base model running on into "Question: ...
   Answer: Y" after a bare value is read by rule 5);
5. the first non-empty line.

Exactly one place is read, and equality with the target follows, so a list
of candidates ("A, B or C") never equals a single target.
"""

from __future__ import annotations

import json
import re
from difflib import SequenceMatcher
from typing import Callable, Mapping, Sequence

_TRAILING = ".,;:!?"
_QUOTES = "\"'`"
_MARKER = re.compile(r"\b(?:final\s+)?answer\s*(?:is\s*:?|:)\s*", re.IGNORECASE)
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_TOKEN = re.compile(r"[0-9A-Za-z]+(?:[-_.:/][0-9A-Za-z]+)*")


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


def unwrap(text: str) -> str:
    """normalize, then drop markdown emphasis around the whole (`**X**`, `*X*`, `__X__`, backticks) and normalize again."""
    s = normalize(text)
    for mark in ("**", "__", "*", "_", "`"):
        if len(s) > 2 * len(mark) and s.startswith(mark) and s.endswith(mark):
            s = normalize(s[len(mark) : -len(mark)])
    return s


def extract_answer(prediction: str) -> str | None:
    """The one place a wrapped answer is read from (rules in the module docstring); None: several candidates."""
    lines = [line for line in prediction.splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0]
    if m := _MARKER.search(first):
        return first[m.end():]
    bold = {unwrap(a or b) for a, b in _BOLD.findall(first)}
    if bold:
        return bold.pop() if len(bold) == 1 else None
    if first.rstrip().endswith(":") and len(lines) > 1:
        return lines[1]
    sentence = len(first.split()) >= 3 and first.rstrip()[-1] in ".!?"  # an explanation, not a bare value
    if sentence and len(lines) > 1 and (found := list(_MARKER.finditer(lines[-1]))):
        return lines[-1][found[-1].end():]
    return first


def exact_match(prediction: str, target: str) -> float:
    answer = extract_answer(prediction)
    return float(answer is not None and unwrap(answer) == normalize(target))


def exact_match_strict(prediction: str, target: str) -> float:
    return float(normalize(first_line(prediction)) == normalize(target))


def _shape(token: str) -> str:
    return "".join("x" if c.isalnum() else c for c in token)


def names_candidates(prediction: str, reference: str) -> bool:
    """Two or more distinct values shaped like a digit-bearing reference (numbers, UUIDs) in the prediction."""
    if not any(c.isdigit() for c in reference):
        return False
    shape = _shape(reference)
    found = {t.lower() for t in _TOKEN.findall(prediction) if _shape(t) == shape and any(c.isdigit() for c in t)}
    return len(found) > 1


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
    if len(references) == 1 and names_candidates(prediction, references[0]):
        return 0.0
    p = prediction.lower()
    return sum(r.lower() in p for r in references) / len(references)


def string_match_any(prediction: str, references: Sequence[str]) -> float:
    if not references:
        raise ValueError("string_match_any needs at least one reference")
    if len(references) == 1 and names_candidates(prediction, references[0]):
        return 0.0
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
    "exact_match_strict": lambda pred, s: exact_match_strict(pred, s["target"]),  # scored beside exact_match
}


def scored_metrics(names: Sequence[str]) -> list[str]:
    """The metrics `score` reports for a sample naming `names`: exact_match brings exact_match_strict beside it."""
    return [*names, "exact_match_strict"] if "exact_match" in names else list(names)


def score(sample: Mapping, prediction: str) -> dict[str, float]:
    """Every metric the sample names, for one prediction (see scored_metrics)."""
    return {name: METRICS[name](prediction, sample) for name in scored_metrics(sample["metrics"])}
