"""segment_count (paper): count an item's occurrences inside a marked segment.

A sequence of animal words holds a segment between `[` and `]` (the paper's
meta-tokens go right inside both brackets); the same words occur outside the
segment as distractors. The answer is an integer, possibly 0.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from metabench import words as W
from metabench.tasks.base import Block, Layout, TaskSpec, insert_markers


@dataclass(frozen=True)
class SegmentCountSpec(TaskSpec):
    family = "segment_count"
    description = "count how often a word occurs between [ and ] in a word sequence (paper)"
    metrics = ("exact_match",)
    category = "counting"
    n_items: int = 48
    segment_len: int = 16
    vocab: int = 4
    depths: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.segment_len > self.n_items:
            raise ValueError("segment_count: segment_len cannot exceed n_items")
        if not 2 <= self.vocab <= len(W.COUNT_ITEMS):
            raise ValueError(f"segment_count: vocab must be between 2 and {len(W.COUNT_ITEMS)}")

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        depth = self.depth_for(index)
        vocab = rng.sample(W.COUNT_ITEMS, self.vocab)
        seq = [rng.choice(vocab) for _ in range(self.n_items)]
        start = rng.randrange(self.n_items - self.segment_len + 1)
        seg = seq[start : start + self.segment_len]
        item = rng.choice(vocab)
        count = seg.count(item)
        before, after = " ".join(seq[:start]), " ".join(seq[start + self.segment_len :])
        head = " Sequence:" + (" " + before if before else "") + " ["
        text = f"{head} {' '.join(seg)} ]" + (" " + after if after else "") + "."
        offsets = [len(head), len(head) + 1 + len(" ".join(seg))]
        text, markers = insert_markers(text, offsets, marker)
        return Layout(
            instruction="Somewhere in the text below is a sequence of words with a segment marked by [ and ].\n\nText:",
            blocks=(Block(text, depth, markers, primary=True),),
            question=f'\n\nHow many times does the word "{item}" appear between [ and ]? Answer with a number.',
            answer_prefix="\nAnswer:",
            target=str(count),
            answers=(str(count),),
            depth=depth,
            info={"item": item, "segment_start": start},
        )

    def chance(self) -> float:
        # Best blind guess: the mode of Binomial(segment_len, 1/vocab).
        n, p = self.segment_len, 1.0 / self.vocab
        return max(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1))


VARIANTS: dict[str, TaskSpec] = {
    "default": SegmentCountSpec(),
    "long": SegmentCountSpec(n_items=192, segment_len=64),
}
