"""Filler text: procedural English sentences, or the user's own text files.

A haystack is a pool of *units* (sentences), each rendered with a leading
space exactly as it appears in a prompt, plus each unit's token count under a
given tokenizer. A sample draws a sequence of units from the pool with its own
RNG; lengths are then fitted by summing known counts (see lengths.py), so no
prompt is re-tokenized for every added sentence.

Procedural filler: about twenty sentence shapes over the `FILLER_*` word lists
in words.py give hundreds of thousands of distinct, natural-looking sentences
with no digits and no key words, so a needle never collides with the
haystack. The pool is a fixed function of `POOL_SEED` and `POOL_SIZE`: change
either and every golden hash changes, so bump the haystack name with them.

File filler: the files are split into sentences, kept in order; a sample
starts at a random sentence and reads on (wrapping around), like RULER's essay
haystack, so the text stays coherent. Noise filler is RULER's other haystack,
its five noise sentences read the same way, so they repeat.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from metabench import words as W
from metabench.errors import MetabenchError
from metabench.tokenizer import Tokenizer

POOL_SEED = 20250916  # the paper's arXiv month; any constant would do
POOL_SIZE = 8192


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _shapes() -> list[Callable[[random.Random], str]]:
    c = random.Random.choice
    N, A, V, VI = W.FILLER_NOUNS, W.FILLER_ADJECTIVES, W.FILLER_VERBS_PAST, W.FILLER_VERBS_INTRANSITIVE
    ADV, T, TP, NM, P, NW = (
        W.FILLER_ADVERBS, W.FILLER_TIMES, W.FILLER_TIME_PHRASES, W.FILLER_NAMES,
        W.FILLER_PREPOSITIONS, W.FILLER_NUMBER_WORDS,
    )
    return [
        lambda r: f"The {c(r, A)} {c(r, N)} {c(r, V)} the {c(r, N)} {c(r, TP)}.",
        lambda r: f"{c(r, NM)} {c(r, V)} the {c(r, A)} {c(r, N)} {c(r, T)}.",
        lambda r: f"{_cap(c(r, TP))}, the {c(r, N)} {c(r, P)} the {c(r, N)} looked {c(r, A)}.",
        lambda r: f"{c(r, NM)} {c(r, VI)} {c(r, ADV)} {c(r, P)} the {c(r, A)} {c(r, N)}.",
        lambda r: f"Nobody expected the {c(r, N)} to be so {c(r, A)}.",
        lambda r: f"{c(r, NM)} said that the {c(r, N)} was {c(r, A)}, but {c(r, NM)} disagreed.",
        lambda r: f"There was {_a(c(r, A))} {c(r, N)} {c(r, P)} the {c(r, N)}.",
        lambda r: f"{_cap(c(r, NW))} {c(r, N)}s {c(r, VI)} near the {c(r, A)} {c(r, N)} {c(r, TP)}.",
        lambda r: f"The {c(r, N)} of the {c(r, N)} grew more {c(r, A)} {c(r, TP)}.",
        lambda r: f"{c(r, NM)} {c(r, ADV)} {c(r, V)} {_a(c(r, N))} and then {c(r, VI)}.",
        lambda r: f"When the {c(r, N)} {c(r, VI)}, the {c(r, N)} stayed {c(r, A)}.",
        lambda r: f"It was {_a(c(r, A))} day, and the {c(r, N)} felt {c(r, A)}.",
        lambda r: f"{c(r, NM)} kept {_a(c(r, N))} in the {c(r, N)} for {c(r, NW)} years.",
        lambda r: f"The {c(r, A)} {c(r, N)} {c(r, VI)} while {c(r, NM)} {c(r, V)} the {c(r, N)}.",
        lambda r: f"Some say the {c(r, N)} {c(r, P)} the {c(r, N)} is {c(r, A)} {c(r, TP)}.",
        lambda r: f"{c(r, NM)} asked whether the {c(r, N)} had {c(r, VI)} {c(r, T)}.",
        lambda r: f"From the {c(r, N)}, one could see {_a(c(r, A))} {c(r, N)}.",
        lambda r: f"The {c(r, N)} and the {c(r, N)} were both {c(r, A)} {c(r, TP)}.",
        lambda r: f"{_cap(c(r, T))}, {c(r, NM)} {c(r, V)} the {c(r, N)} {c(r, ADV)}.",
        lambda r: f"No one {c(r, V)} the {c(r, A)} {c(r, N)} {c(r, P)} the {c(r, N)}.",
    ]


def procedural_sentences(rng: random.Random, n: int) -> list[str]:
    """`n` sentences from the procedural grammar, drawn with `rng`."""
    shapes = _shapes()
    return [rng.choice(shapes)(rng) for _ in range(n)]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def file_sentences(paths: Sequence[str | Path]) -> list[str]:
    """Sentences of the user's text files, in order; whitespace runs collapsed."""
    sentences: list[str] = []
    for p in paths:
        path = Path(p)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MetabenchError(f"cannot read haystack file {path}: {exc}") from exc
        text = " ".join(text.split())
        sentences.extend(s for s in _SENTENCE_END.split(text) if s)
    if len(sentences) < 2:
        raise MetabenchError(
            f"haystack files {', '.join(map(str, paths))} hold fewer than 2 sentences; give more text"
        )
    return sentences


@dataclass(frozen=True)
class Haystack:
    """A pool of filler units with their token counts under one tokenizer.

    `units[i]` is the text exactly as inserted (leading space included) and
    `counts[i]` its token count; `ordered` says whether a sample reads the pool
    in order from a random start (files) or draws units at random (procedural).
    `additive` records whether this tokenizer's count of concatenated units
    equals the sum of their counts (checked once over the whole pool); when it
    does not, every prompt is verified by a full tokenization instead.
    """

    name: str
    units: tuple[str, ...]
    counts: tuple[int, ...]
    ordered: bool
    additive: bool
    max_count: int


class UnitStream:
    """A sample's endless, deterministic sequence of unit indices into a haystack.

    Indices are produced in fixed-size chunks from the sample's RNG, so the first
    n indices are the same however many are eventually taken.
    """

    CHUNK = 256

    def __init__(self, haystack: Haystack, rng: random.Random):
        self.h = haystack
        self.rng = rng
        self.indices: list[int] = []
        self.start = rng.randrange(len(haystack.units)) if haystack.ordered else 0

    def take(self, n: int) -> list[int]:
        size = len(self.h.units)
        while len(self.indices) < n:
            k = len(self.indices)
            if self.h.ordered:
                self.indices.extend((self.start + k + i) % size for i in range(self.CHUNK))
            else:
                # What rng.choices(range(size), k=CHUNK) draws, without its per-item indexing.
                draw = self.rng.random
                self.indices += [math.floor(draw() * size) for _ in range(self.CHUNK)]
        return self.indices[:n]


def build_haystack(tokenizer: Tokenizer, files: Sequence[str | Path] | None = None, noise: bool = False) -> Haystack:
    """The haystack for `tokenizer`: procedural by default, from `files`, or RULER's noise. Cached per tokenizer."""
    key = ("haystack", "noise" if noise else tuple(str(f) for f in files) if files else None)
    cached = tokenizer._cache.get(key)
    if cached is not None:
        return cached
    if noise:
        sentences, name, ordered = list(W.NOISE_SENTENCES), "noise-v1", True
    elif files:
        sentences = file_sentences(files)
        digest = hashlib.sha256("\n".join(sentences).encode()).hexdigest()[:12]
        name, ordered = f"files:{digest}", True
    else:
        sentences = procedural_sentences(random.Random(POOL_SEED), POOL_SIZE)
        name, ordered = f"procedural-v1:{POOL_SEED}:{POOL_SIZE}", False
    units = tuple(" " + s for s in sentences)
    counts = tuple(tokenizer.count_batch(units))
    if min(counts) == 0:
        raise MetabenchError("the tokenizer encodes a haystack sentence to zero tokens")
    additive = _check_additive(tokenizer, units, counts)
    hay = Haystack(name, units, counts, ordered, additive, max(counts))
    tokenizer._cache[key] = hay
    return hay


def _check_additive(tokenizer: Tokenizer, units: Sequence[str], counts: Sequence[int]) -> bool:
    """Does tokenizing joined units give the sum of their counts, at every boundary?

    Checked on a shuffled order of the whole pool (every unit once, after a
    random neighbour), in slices so that a mismatch is not hidden by two errors
    cancelling out across a long text.
    """
    shuffled = list(range(len(units)))
    random.Random(POOL_SEED + 1).shuffle(shuffled)
    slices = []
    for i in range(0, len(shuffled), 64):
        part = shuffled[i : i + 64]
        slices.append(("".join(units[j] for j in part), sum(counts[j] for j in part)))
    got = tokenizer.count_batch([text for text, _ in slices])
    return all(g == want for g, (_, want) in zip(got, slices))
