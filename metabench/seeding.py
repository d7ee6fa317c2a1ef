"""Derived seeds: every sample owns its own `random.Random`.

A sample is a pure function of (task spec, length, index, suite seed,
tokenizer), so its RNG is seeded from a hash of exactly those parts, never
from the global RNG and never from a counter shared with other samples.
Sample i is therefore the same whether 10 or 1000 samples are asked for.
"""

import hashlib
import random


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from any parts with a stable `repr` (str, int, float, tuples)."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def derive_rng(*parts: object) -> random.Random:
    return random.Random(derive_seed(*parts))
