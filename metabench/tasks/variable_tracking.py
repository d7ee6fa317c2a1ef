"""variable_tracking (RULER's VT): follow chains of variable assignments through filler.

Statements read `VAR ABCDE = 12345` and `VAR FGHIJ = VAR ABCDE`: each chain
starts from a five-digit value and passes it on `hops` times, so `hops + 1`
variables hold it. `chains` chains are spread through the filler, each
chain's statements in order at random depths; the question gives chain 0's
value and the answer is the set of its variables (scored with
string_match_all, as RULER does; exact_match wants them in assignment order).

As in RULER, a one-shot example comes first: a short chain with three-letter
names among RULER's noise sentences, and its answer. Unlike RULER's generator, the
answer set is never ambiguous: every name and value is distinct within the
sample (the example included), no name occurs outside its statements, and
chains never share a value. Meta-token markers go after every statement.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from metabench import words as W
from metabench.tasks.base import Block, Layout, TaskSpec, with_marker

INSTRUCTION = "Memorize and track the chain(s) of variable assignment hidden in the following text."
EXAMPLE_MAX_HOPS = 10  # RULER caps its example's chain at 10 hops


def _names(rng: random.Random, n: int, letters: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        name = "".join(rng.choices(string.ascii_uppercase, k=letters))
        if name not in taken and name != "VAR":
            taken.add(name)
            out.append(name)
    return out


def _values(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        v = str(rng.randint(10000, 99999))
        if v not in taken:
            taken.add(v)
            out.append(v)
    return out


def statements(names: list[str], value: str) -> list[str]:
    """A chain: the first name takes the value, every next name takes the previous one."""
    return [f"VAR {names[0]} = {value}"] + [f"VAR {b} = VAR {a}" for a, b in zip(names, names[1:])]


def question(value: str) -> str:
    return f"\nQuestion: Find all variables that are assigned the value {value} in the text above."


def answer_prefix(n: int, value: str) -> str:
    return (
        f" Answer: According to the chain(s) of variable assignment in the text above, {n} variables are "
        f"assigned the value {value}, they are:"
    )


@dataclass(frozen=True)
class VariableTrackingSpec(TaskSpec):
    family = "variable_tracking"
    description = "name every variable that ends up holding a value, through chains of VAR assignments (RULER VT)"
    metrics = ("string_match_all", "exact_match")
    category = "multi-hop tracing"
    chains: int = 1
    hops: int = 4
    one_shot: bool = True

    def example(self, rng: random.Random, taken_names: set[str], taken_values: set[str]) -> str:
        """RULER's one-shot example: a short chain among the noise sentences, then its answer."""
        hops = min(self.hops, EXAMPLE_MAX_HOPS)
        names = _names(rng, hops + 1, 3, taken_names)
        value = _values(rng, 1, taken_values)[0]
        size = len(W.NOISE_SENTENCES) + hops + 1
        slots = set(rng.sample(range(size), hops + 1))
        body, chain = iter(W.NOISE_SENTENCES), iter(statements(names, value))
        text = " ".join(next(chain) if i in slots else next(body) for i in range(size))
        return (
            f"{INSTRUCTION}\n\nText: {text}{question(value)}{answer_prefix(hops + 1, value)} {' '.join(names)}\n\n"
        )

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        taken_names: set[str] = set()
        taken_values: set[str] = set()
        chains = [_names(rng, self.hops + 1, 5, taken_names) for _ in range(self.chains)]
        values = _values(rng, self.chains, taken_values)
        blocks: list[Block] = []
        for names, value in zip(chains, values):
            depths = sorted(rng.random() for _ in names)
            for text, depth in zip(statements(names, value), depths):
                text, off = with_marker(" " + text, len(text) + 1, marker)
                blocks.append(Block(text, depth, (off,)))
        # Stable: statements of one chain that land on the same depth keep their order.
        blocks.sort(key=lambda b: b.depth)
        example = self.example(rng, taken_names, taken_values) if self.one_shot else ""
        names, value = chains[0], values[0]
        return Layout(
            instruction=f"{example}{INSTRUCTION}\n\nText:",
            blocks=tuple(blocks),
            question=question(value),
            answer_prefix=answer_prefix(len(names), value),
            target=" ".join(names),
            answers=tuple(names),
            info={"value": value, "chains": [[*c] for c in chains]},
            avoid=tuple(n for c in chains for n in c) + tuple(values),
        )


VARIANTS: dict[str, TaskSpec] = {
    "default": VariableTrackingSpec(),
    "two_chains": VariableTrackingSpec(chains=2),
    "long": VariableTrackingSpec(hops=8),
    # No one-shot example: fits from about 200 tokens (metabench_all runs it at a quarter of small contexts).
    "brief": VariableTrackingSpec(one_shot=False),
}
