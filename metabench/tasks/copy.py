"""copy (paper): reproduce a marked span of random words exactly.

The span sits between visible `<<<` and `>>>` delimiters at the sample's
depth; the paper puts meta-tokens around it. Scored by exact match and by
token accuracy (the fraction of span words reproduced in place).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from metabench import words as W
from metabench.tasks.base import Block, Layout, TaskSpec, insert_markers


@dataclass(frozen=True)
class CopySpec(TaskSpec):
    family = "copy"
    description = "reproduce the span between <<< and >>> word for word (paper)"
    metrics = ("exact_match", "token_accuracy")
    category = "recall and copying"
    span_words: int = 16
    depths: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        depth = self.depth_for(index)
        span = " ".join(rng.choice(W.KEY_WORDS) for _ in range(self.span_words))
        head = " Here is a passage to copy: <<<"
        text = f"{head} {span} >>>."
        offsets = [len(head), len(head) + 1 + len(span)]  # after <<< and before " >>>"
        text, markers = insert_markers(text, offsets, marker)
        return Layout(
            instruction="Somewhere in the text below is a passage between <<< and >>>.\n\nText:",
            blocks=(Block(text, depth, markers, primary=True),),
            question="\n\nRepeat the passage between <<< and >>> exactly, word for word.",
            answer_prefix="\nAnswer:",
            target=span,
            answers=(span,),
            depth=depth,
            info={"span_words": self.span_words},
        )


VARIANTS: dict[str, TaskSpec] = {
    "short": CopySpec(span_words=8),
    "default": CopySpec(),
    "long": CopySpec(span_words=64),
}
