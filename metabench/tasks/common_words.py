"""common_words (RULER's CWE): name the most common words of a long numbered word list.

The list is the whole context, `1. word 2. word ...`: `n_common` words occur
`freq_common` times each and the rest (the rare words, as many as the budget
holds) `freq_rare` times each, in a random order. The answer is the set of
common words, scored with string_match_all. RULER's defaults: 10 common
words, 30 and 3 repeats, after a one-shot example (40 words, 10 and 3
repeats) with its answer.

Answers are never ambiguous: `freq_common > freq_rare` (no tie at the cut),
words are six-letter made-up words (`words.coined_words`), so no word is a
substring of another, none occurs in the prompt's own wording, and the
example's words are not the list's. Each common word occurs in the prompt
exactly `freq_common` times.

A sample reads the fixed shuffled vocabulary from a random start: the first
words are the common ones, then the example's, then the rare ones, so the
question is the same for every tokenizer and only the number of rare words
differs. The list is grown to the budget by `grown.fit_grown`.

No meta-token markers: the answer is spread over the whole context, so no
position is the one to mark (`--marker` leaves these prompts as they are).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any

from metabench import words as W
from metabench.tasks.base import Counter, Grown, Layout, TaskSpec

INSTRUCTION = (
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often.\n"
)


def question(n: int) -> str:
    return f"\nQuestion: What are the {n} most common words in the above list?"


def answer_prefix(n: int) -> str:
    return f" Answer: The top {n} words that appear most often in the list are:"


@functools.cache
def vocabulary() -> tuple[str, ...]:
    """The coined words that occur nowhere in the prompt's own wording."""
    fixed = (INSTRUCTION + question(0) + answer_prefix(0)).lower()
    return tuple(w for w in W.coined_words() if w not in fixed)


def numbered(words: list[str]) -> str:
    return " ".join(f"{i}. {w}" for i, w in enumerate(words, start=1))


def arrange(rng: random.Random, common: list[str], rare: list[str], freq_common: int, freq_rare: int) -> list[str]:
    items = common * freq_common + rare * freq_rare
    rng.shuffle(items)
    return items


@dataclass
class WordList(Grown):
    """The list at size n: the common words and the first n rare words, repeated and shuffled.

    The sample's words are the vocabulary read from `start` (wrapping around): the common
    ones, the example's, then the rare ones. Their token counts are cumulative sums over
    the vocabulary, counted once per tokenizer, so sizing a list tokenizes nothing.
    """

    start: int
    n_common: int
    n_example: int
    freq_common: int
    freq_rare: int
    seed: int  # of the shuffle, so the list at a given size is always the same

    def __post_init__(self) -> None:
        vocab = vocabulary()
        self.maximum = len(vocab) - self.n_common - self.n_example
        self.common = self.words(self.start, self.n_common)
        self.first = "1."
        self.last = " " + self.common[0]

    def words(self, at: int, k: int) -> list[str]:
        vocab = vocabulary()
        at %= len(vocab)
        return list(vocab[at : at + k]) + list(vocab[: max(0, at + k - len(vocab))])

    def span(self, at: int, k: int, count: Counter) -> int:
        """Tokens of k vocabulary words read from `at`, each as the piece " word"."""
        vocab = vocabulary()
        size = len(vocab)

        def upto(i: int) -> int:
            # Past the vocabulary's end (the sums grow by doubling) pieces are empty: no tokens.
            return count.cumulative("common_words.vocabulary", lambda j: " " + vocab[j - 1] if j <= size else "", i)

        at %= size
        if at + k <= size:
            return upto(at + k) - upto(at)
        return upto(size) - upto(at) + upto(at + k - size)

    def items(self, n: int) -> int:
        return self.n_common * self.freq_common + n * self.freq_rare

    def tokens(self, n: int, count: Counter) -> int:
        rare_at = self.start + self.n_common + self.n_example
        words = self.freq_common * self.span(self.start, self.n_common, count) + self.freq_rare * self.span(rare_at, n, count)
        numbers = count.cumulative("numbered", lambda i: f" {i}." if i > 1 else "1.", self.items(n))
        return numbers + words

    def upper(self, budget: int) -> int:
        return budget // (2 * self.freq_rare) + 1  # each rare word adds freq_rare items of >= 2 tokens

    def render(self, n: int) -> tuple[str, dict[str, Any]]:
        rare = self.words(self.start + self.n_common + self.n_example, n)
        items = arrange(random.Random(self.seed), self.common, rare, self.freq_common, self.freq_rare)
        return numbered(items), {"items": len(items)}


@dataclass(frozen=True)
class CommonWordsSpec(TaskSpec):
    family = "common_words"
    description = "name the most common words of a long numbered word list (RULER CWE)"
    metrics = ("string_match_all",)
    category = "aggregation"
    n_common: int = 10
    freq_common: int = 30
    freq_rare: int = 3
    one_shot: bool = True
    example_words: int = 40
    example_freq_common: int = 10
    example_freq_rare: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        for common, rare in (("freq_common", "freq_rare"), ("example_freq_common", "example_freq_rare")):
            if getattr(self, common) <= getattr(self, rare):
                raise ValueError(f"common_words: {common} must exceed {rare}, or the answer would be ambiguous")
        if self.one_shot and self.example_words <= self.n_common:
            raise ValueError("common_words: example_words must exceed n_common (the example needs rare words)")

    def example(self, rng: random.Random, words: list[str]) -> str:
        """RULER's one-shot example: a short list, its question and its answer."""
        common, rare = words[: self.n_common], words[self.n_common :]
        items = arrange(rng, common, rare, self.example_freq_common, self.example_freq_rare)
        return (
            f"{INSTRUCTION}{numbered(items)}{question(self.n_common)}{answer_prefix(self.n_common)} "
            f"{numbered(common)}\n"
        )

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        vocab = vocabulary()
        start = rng.randrange(len(vocab))
        n_example = self.example_words if self.one_shot else 0
        at = [(start + self.n_common + i) % len(vocab) for i in range(n_example)]
        example = self.example(rng, [vocab[i] for i in at]) if self.one_shot else ""
        grown = WordList(start, self.n_common, n_example, self.freq_common, self.freq_rare, rng.getrandbits(64))
        common = grown.common
        return Layout(
            instruction=example + INSTRUCTION,
            blocks=(),
            question=question(self.n_common),
            answer_prefix=answer_prefix(self.n_common),
            target=numbered(common),
            answers=tuple(common),
            info={"common": common},
            grown=grown,
        )


VARIANTS: dict[str, TaskSpec] = {
    "default": CommonWordsSpec(),
    # RULER's setting below 4k tokens: fewer repeats, and a shorter example.
    "short": CommonWordsSpec(freq_common=6, freq_rare=1, example_words=20, example_freq_common=3, example_freq_rare=1),
    # Fewer repeats and no example: fits from about 300 tokens (metabench_all runs it at a quarter of small contexts).
    "brief": CommonWordsSpec(freq_common=3, freq_rare=1, one_shot=False),
}
