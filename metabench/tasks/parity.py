"""parity (paper): the XOR of the bits before a marker.

A bit string holds a visible `|`; the paper's meta-token goes right after it.
The answer is 1 if an odd number of ones precede the mark, else 0.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from metabench.tasks.base import Block, Layout, TaskSpec, insert_markers


@dataclass(frozen=True)
class ParitySpec(TaskSpec):
    family = "parity"
    description = "XOR of the bits before the | mark in a bit string (paper)"
    metrics = ("exact_match",)
    category = "counting"
    n_bits: int = 24
    depths: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_bits < 2:
            raise ValueError("parity: n_bits must be at least 2")

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        depth = self.depth_for(index)
        bits = [rng.randrange(2) for _ in range(self.n_bits)]
        cut = rng.randrange(1, self.n_bits)
        head = " Bits: " + " ".join(map(str, bits[:cut])) + " |"
        text = head + " " + " ".join(map(str, bits[cut:])) + "."
        text, markers = insert_markers(text, [len(head)], marker)
        answer = str(sum(bits[:cut]) % 2)
        return Layout(
            instruction="Somewhere in the text below is a string of bits with a | mark in it.\n\nText:",
            blocks=(Block(text, depth, markers, primary=True),),
            question="\n\nWhat is the parity (XOR) of the bits before the | mark? Answer 0 or 1.",
            answer_prefix="\nAnswer:",
            target=answer,
            answers=(answer,),
            depth=depth,
            info={"bits_before": cut},
        )

    def chance(self) -> float:
        return 0.5


VARIANTS: dict[str, TaskSpec] = {
    "default": ParitySpec(),
    "long": ParitySpec(n_bits=96),
}
