"""needle:twohop: two facts at separate depths link the question to the answer.

A *bridge* fact ties the queried key to a second name ("amber-falcon keeps
its treasure in the vault called jade-otter"); an *answer* fact ties that
name to the value ("The vault called jade-otter is sealed with the code
4827193"). The question names only the key and shares no content word with
the answer fact (as NoLiMa asks), so string overlap with the question cannot
find the value: the model has to read the bridge first. Distractor chains of
the same shape (other keys, other names, other values) make every number in
the text a candidate.

Depths: the answer fact's depth cycles over `depths` and the bridge's over
`bridge_depths`, over every pair of different depths (sample i takes pair
i mod the number of pairs), so bridge-before-answer and answer-before-bridge
are both measured. The answer fact is the primary block (the sample's
`depth`); both requested depths are in `info["depths"]` and both measured
ones in `info["depths_actual"]`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from metabench import words as W
from metabench.tasks.base import Block, Layout, TaskSpec
from metabench.tasks.needle import distinct

# (bridge fact, answer fact, question): {a} the key, {b} the bridge name, {v} the value.
# The question shares no content word with the answer fact (tests check every template).
TEMPLATES: tuple[tuple[str, str, str], ...] = (
    (
        " {a} keeps its treasure in the vault called {b}.",
        " The vault called {b} is sealed with the code {v}.",
        "Which digits must be entered where {a} keeps its treasure?",
    ),
    (
        " {a} was born in the town of {b}.",
        " Every house in {b} carries the postal code {v}.",
        "Which digits are written on letters sent to the birthplace of {a}?",
    ),
    (
        " {a} sails a ship named {b}.",
        " The ship {b} is registered under the number {v}.",
        "Which digits identify the vessel that {a} steers?",
    ),
)


@dataclass(frozen=True)
class TwoHopSpec(TaskSpec):
    family = "needle"
    description = "follow a bridge fact to the fact holding the answer; no word shared with the question"
    metrics = ("string_match_all", "exact_match")
    category = "multi-hop tracing"  # two linked facts, as variable tracking chains them
    chains: int = 3  # bridge + answer pairs in the text: 1 queried, the rest distractors
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # the answer fact's
    bridge_depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(not 0.0 <= d <= 1.0 for d in self.bridge_depths) or not self.pairs():
            raise ValueError(
                f"needle: bridge_depths must be numbers in [0, 1] with at least one differing from depths, "
                f"got depths {self.depths} and bridge_depths {self.bridge_depths}"
            )

    def pairs(self) -> list[tuple[float, float]]:
        """(answer depth, bridge depth) for every pair of different depths, in a fixed order."""
        return [(a, b) for b in self.bridge_depths for a in self.depths if a != b]

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        answer_depth, bridge_depth = self.pairs()[index % len(self.pairs())]
        bridge_t, answer_t, question_t = rng.choice(TEMPLATES)
        names = rng.sample(W.KEY_WORDS, 4 * self.chains)  # every key and bridge name of distinct words
        keys = [f"{names[4 * i]}-{names[4 * i + 1]}" for i in range(self.chains)]
        bridges = [f"{names[4 * i + 2]}-{names[4 * i + 3]}" for i in range(self.chains)]
        values = distinct(rng, "numbers", self.chains, set())
        blocks = [
            Block(bridge_t.format(a=keys[0], b=bridges[0]), bridge_depth, name="bridge"),
            Block(answer_t.format(b=bridges[0], v=values[0]), answer_depth, primary=True, name="answer"),
        ]
        for a, b, v in zip(keys[1:], bridges[1:], values[1:]):
            blocks += [Block(bridge_t.format(a=a, b=b), rng.random()), Block(answer_t.format(b=b, v=v), rng.random())]
        blocks.sort(key=lambda bl: bl.depth)
        return Layout(
            instruction=(
                "Some facts are hidden within the following text. Read it carefully: a question that needs "
                "two of them follows.\n\nText:"
            ),
            blocks=tuple(blocks),
            question=f"\n\nQuestion: {question_t.format(a=keys[0])}",
            answer_prefix="\nAnswer:",
            target=values[0],
            answers=(values[0],),
            depth=answer_depth,
            info={"key": keys[0], "bridge": bridges[0], "template": TEMPLATES.index((bridge_t, answer_t, question_t)),
                  "depths": {"answer": answer_depth, "bridge": bridge_depth}},
            avoid=(*keys, *bridges, *values),
        )


VARIANTS: dict[str, TaskSpec] = {
    "twohop": TwoHopSpec(),
}
