"""list_recall (paper): N named lists of k items; recall item j of list X.

The lists are spread through the filler; the queried list sits at the
sample's depth, the others at random depths. The paper places a meta-token
right after the queried list.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from metabench import words as W
from metabench.tasks.base import Block, Layout, TaskSpec, with_marker


@dataclass(frozen=True)
class ListRecallSpec(TaskSpec):
    family = "list_recall"
    description = "recall item j of a named list among N lists of k items (paper)"
    metrics = ("exact_match",)
    category = "recall and copying"
    n_lists: int = 4
    list_len: int = 6
    depths: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_lists + self.list_len > len(W.KEY_WORDS):
            raise ValueError(f"list_recall: n_lists + list_len must be at most {len(W.KEY_WORDS)}")

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        depth = self.depth_for(index)
        names = rng.sample(W.KEY_WORDS, self.n_lists)
        pool = [w for w in W.ITEM_WORDS if w not in names]
        lists = [rng.sample(pool, self.list_len) for _ in names]
        j = rng.randrange(self.list_len)
        blocks = []
        for i, (name, items) in enumerate(zip(names, lists)):
            text = f" List {name}: {', '.join(items)}."
            markers: tuple[int, ...] = ()
            if i == 0:
                text, off = with_marker(text, len(text), marker)
                markers = (off,)
            blocks.append(Block(text, depth if i == 0 else rng.random(), markers, primary=i == 0))
        blocks.sort(key=lambda b: b.depth)
        target = lists[0][j]
        return Layout(
            instruction=f"Below are {self.n_lists} named lists hidden in some text. Remember them.\n\nText:",
            blocks=tuple(blocks),
            question=f"\n\nQuestion: What is item number {j + 1} of list {names[0]}?",
            answer_prefix="\nAnswer:",
            target=target,
            answers=(target,),
            depth=depth,
            info={"list": names[0], "item_index": j + 1},
        )

    def chance(self) -> float:
        return 1.0 / (self.n_lists * self.list_len)


VARIANTS: dict[str, TaskSpec] = {
    "easy": ListRecallSpec(n_lists=2, list_len=4),
    "default": ListRecallSpec(),
    "hard": ListRecallSpec(n_lists=12, list_len=10),
}
