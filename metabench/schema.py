"""The Sample record and its JSONL form.

One JSON object per line, keys sorted, no whitespace, UTF-8, so that equal
samples are byte-identical files on every machine. Files are written to a
temporary name and renamed at the end: a failed generation leaves no partial
file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator


@dataclass(frozen=True)
class Sample:
    id: str  # "{entry}/{length_label}/{index}", unique within a suite
    task: str
    variant: str
    entry: str  # the suite entry's name (task/variant unless named)
    index: int
    seed: int  # the suite seed; the sample's own RNG derives from it
    length: int  # target length in tokens: prompt_tokens + answer_budget <= length
    length_label: str  # as requested: "2x", "4096"
    prompt: str
    prompt_tokens: int  # specials and chat template included
    answer_budget: int  # max new tokens for the answer
    target: str
    answers: list[str]
    metrics: list[str]  # the first is the task's primary metric
    depth: float | None  # requested depth of the queried content, 0..1
    depth_actual: float | None  # filler tokens before it / all filler tokens
    marker: str | None  # meta-token string inserted, or None
    marker_offsets: list[int]  # character offsets where meta-tokens are (or would go)
    marker_token_positions: list[int] | None  # token indices of inserted markers
    filler_tokens: int
    add_special_tokens: bool  # whether the backend should add BOS etc. when tokenizing
    chat_template: bool
    tokenizer: str  # tokenizer fingerprint
    haystack: str
    chance: float
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return dumps(asdict(self))


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


@contextlib.contextmanager
def atomic_writer(path: str | Path):
    """Open `path.tmp` for writing; rename to `path` on success, delete it on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    f = open(tmp, "w", encoding="utf-8", newline="\n")
    try:
        yield f
        f.close()
        os.replace(tmp, path)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise


def write_jsonl(records: Iterable[Sample], path: str | Path) -> int:
    """Stream records to `path` atomically; returns how many were written."""
    n = 0
    with atomic_writer(path) as f:
        for r in records:
            f.write(r.to_json())
            f.write("\n")
            n += 1
    return n
