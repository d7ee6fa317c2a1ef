"""frequent_words (RULER's FWE): name the most frequent words of a coded text.

The context is a run of coded words (six random lowercase letters) whose
counts follow Zipf's law: with N words in all, the word of rank k occurs
floor(N k^-alpha / zeta(alpha)) times (alpha 2 by default), in a random
order. As in RULER, rank 1 is the noise token `...` (the prompt says to
ignore the dots) and the answer is the next `top` ranks (3 by default),
scored with string_match_all; exact_match wants them most frequent first.

The answer is never ambiguous: the counts of ranks 2 to top + 2 strictly
decrease (no tie at the cut, and a definite order), which sets the smallest
N and so the shortest length; coded words are distinct, equally long, and
absent from the prompt's own wording, so each answer occurs exactly as
often as its count says. RULER's generator instead fixes a vocabulary of
length/50 words; with alpha 2 past a few hundred tokens only ranks up to
sqrt(N / zeta) occur at all, so the vocabulary here is the ranks that occur.

The text is grown to the budget by `grown.fit_grown`; its order is a
permutation drawn from raw PCG64 bits (a stream NumPy keeps stable across
versions), sorted: thousands of words, shuffled without a Python loop.

No meta-token markers: the answer is spread over the whole context, so no
position is the one to mark (`--marker` leaves these prompts as they are).
"""

from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from metabench.tasks.base import Counter, Grown, Layout, TaskSpec

NOISE = "..."  # rank 1: RULER's noise word


def _many(top: int) -> str:
    return {3: "three"}.get(top, str(top))


def instruction(top: int) -> str:
    return (
        "Read the following coded text and track the frequency of each coded word. "
        f"Find the {_many(top)} most frequently appeared coded words."
    )


def question(top: int) -> str:
    many = _many(top)
    return (
        "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. "
        f"What are the {many} most frequently appeared words in the above coded text?"
    )


def answer_prefix(top: int) -> str:
    return f" Answer: According to the coded text above, the {_many(top)} most frequently appeared words are:"


def zeta(alpha: float) -> float:
    """Riemann zeta for alpha > 1: a partial sum plus its Euler-Maclaurin tail (error below 1e-15)."""
    n = 1000
    head = math.fsum(k ** -alpha for k in range(1, n))
    tail = n ** (1 - alpha) / (alpha - 1) + n ** -alpha / 2 + alpha * n ** (-alpha - 1) / 12
    return head + tail - alpha * (alpha + 1) * (alpha + 2) * n ** (-alpha - 3) / 720


def zipf_counts(total: int, alpha: float) -> list[int]:
    """Counts of ranks 1, 2, ... (while positive) for `total` words: floor(total k^-alpha / zeta(alpha))."""
    z = zeta(alpha)
    out = []
    k = 1
    while (c := int(total * k ** -alpha / z)) > 0:
        out.append(c)
        k += 1
    return out


def unambiguous(counts: list[int], top: int) -> bool:
    """Ranks 2..top+1 are the top words with no tie among them or at the cut (rank top+2)."""
    ranks = [counts[k] if k < len(counts) else 0 for k in range(1, top + 2)]
    return ranks[-2] > 0 and all(a > b for a, b in zip(ranks, ranks[1:]))


@cache
def _minimum(alpha: float, top: int) -> int:
    """The fewest words whose counts give an unambiguous top."""
    n = top + 2
    while not unambiguous(zipf_counts(n, alpha), top):
        n += 1
    return n


def permutation(seed: int, n: int) -> np.ndarray:
    """A uniformly random order of n items from raw PCG64 bits (stable across NumPy versions)."""
    bits = np.random.PCG64(seed).random_raw(n)
    return np.argsort(bits, kind="stable")


class CodedText(Grown):
    """The text at size N: N words with Zipf counts, rank 1 the noise word, in a random order.

    Coded words are drawn rank by rank from their own stream as sizes need them, so the
    word of each rank (and so the answer) is the same whatever size a length ends up at.
    """

    def __init__(self, word_rng: random.Random, word_len: int, exclude: str, alpha: float, seed: int, minimum: int):
        self.word_rng, self.word_len, self.exclude = word_rng, word_len, exclude
        self.alpha, self.seed, self.minimum = alpha, seed, minimum
        self.first = self.last = " " + NOISE
        self.pieces = [" " + NOISE]
        self.seen: set[str] = set()

    def ranks(self, k: int) -> list[str]:
        """Pieces of ranks 1..k (rank 1 the noise word), drawing new coded words as needed."""
        while len(self.pieces) < k:
            w = "".join(self.word_rng.choices(string.ascii_lowercase, k=self.word_len))
            if w not in self.seen and w not in self.exclude:
                self.seen.add(w)
                self.pieces.append(" " + w)
        return self.pieces[:k]

    def tokens(self, n: int, count: Counter) -> int:
        counts = zipf_counts(n, self.alpha)
        return sum(c * t for c, t in zip(counts, count(self.ranks(len(counts)))))

    def upper(self, budget: int) -> int:
        return math.ceil((budget + 1) * zeta(self.alpha)) + 1  # rank 1 alone then exceeds the budget

    def render(self, n: int) -> tuple[str, dict[str, Any]]:
        counts = zipf_counts(n, self.alpha)
        pieces = np.repeat(np.array(self.ranks(len(counts)), dtype=object), counts)
        text = "".join(pieces[permutation(self.seed, len(pieces))])
        return text, {"counts": counts[:8], "words": len(pieces)}


@dataclass(frozen=True)
class FrequentWordsSpec(TaskSpec):
    family = "frequent_words"
    description = "name the most frequent coded words of a text with Zipf word frequencies (RULER FWE)"
    metrics = ("string_match_all", "exact_match")
    category = "aggregation"
    alpha: float = 2.0
    top: int = 3
    word_len: int = 6

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.alpha > 1:
            raise ValueError(f"frequent_words: alpha must exceed 1 (Zipf's law needs a finite zeta), got {self.alpha}")
        if self.word_len < 4:
            raise ValueError("frequent_words: word_len must be at least 4, so coded words stay distinct")

    def minimum(self) -> int:
        return _minimum(self.alpha, self.top)

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        # Words by rank come from their own stream, so ranks (and so the answer) are the
        # same for every tokenizer, whatever number of ranks a length ends up using.
        fixed = (instruction(self.top) + question(self.top) + answer_prefix(self.top)).lower()
        word_rng = random.Random(rng.getrandbits(64))
        text = CodedText(word_rng, self.word_len, fixed, self.alpha, rng.getrandbits(64), self.minimum())
        answers = tuple(p[1:] for p in text.ranks(self.top + 1)[1:])
        return Layout(
            instruction=instruction(self.top),
            blocks=(),
            question=question(self.top),
            answer_prefix=answer_prefix(self.top),
            target=", ".join(answers),
            answers=answers,
            info={"ranked": list(answers)},
            grown=text,
        )


VARIANTS: dict[str, TaskSpec] = {
    "default": FrequentWordsSpec(),
}
