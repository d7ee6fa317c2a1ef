"""kv_recall: associative recall over a long JSON object of hex-id key -> value pairs.

The whole context is key-value pairs (as in "Lost in the Middle"): the
queried pairs sit at the sample's depth (further queries at random depths)
and random distractor pairs fill the rest of the budget.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from metabench.tasks.base import Block, Layout, TaskSpec, with_marker


def _uuid(rng: random.Random) -> str:
    """A random uuid, cut to its first 2 to 5 groups: pairs of varied length let
    the filler fill the budget closely, and the queried pair looks like any other."""
    full = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return "-".join(full.split("-")[: rng.randint(2, 5)])


def _pair(key: str, value: str) -> str:
    return f'\n  "{key}": "{value}",'


@dataclass(frozen=True)
class KVRecallSpec(TaskSpec):
    family = "kv_recall"
    description = "return the value of one or more keys from a long JSON object of uuid pairs"
    metrics = ("string_match_all", "exact_match")
    category = "retrieval"
    queries: int = 1
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

    def filler_units(self, rng: random.Random, k: int) -> list[str]:
        """Distractor pairs: fresh random uuids (a collision is a 2^-122 event and is checked anyway)."""
        return [_pair(_uuid(rng), _uuid(rng)) for _ in range(k)]

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        depth = self.depth_for(index)
        keys = [_uuid(rng) for _ in range(self.queries)]
        values = [_uuid(rng) for _ in range(self.queries)]
        blocks = []
        for i, (k, v) in enumerate(zip(keys, values)):
            text, off = with_marker(_pair(k, v), len(_pair(k, v)), marker)
            blocks.append(Block(text, depth if i == 0 else rng.random(), (off,), primary=i == 0))
        blocks.sort(key=lambda b: b.depth)
        many = self.queries > 1
        quoted = ", ".join(f'"{k}"' for k in keys)
        return Layout(
            instruction="Extract the value corresponding to the specified key in the JSON object below.\n\nJSON data:\n{",
            blocks=tuple(blocks),
            question=f"\n}}\n\nKey{'s' if many else ''}: {quoted}",
            answer_prefix=f"\nThe value{'s' if many else ''} associated with the specified key{'s are' if many else ' is'}:",
            target=", ".join(values),
            answers=tuple(values),
            depth=depth,
            info={"keys": keys},
            filler="kv_pairs",
            avoid=tuple(keys) + tuple(values),
        )


VARIANTS: dict[str, TaskSpec] = {
    "single": KVRecallSpec(),
    "multi": KVRecallSpec(queries=4),
}
