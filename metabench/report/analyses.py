"""`metabench analyze` results (analysis.json) as the leaderboard shows them.

`--analysis [NAME=]PATH` names an analysis.json or the folder `metabench
analyze --out` wrote it to. The model is called by its checkpoint folder's
name unless NAME is given. A PATH that exists is taken whole, so a path with
'=' in it still works without a name.

The file is validated completely here, into frozen dataclasses, so the
template never meets a missing key and a wrong file fails before any HTML
is written, with one line saying which field of which file is wrong. The
numbers are shown as the file has them; nothing is recomputed, so the page
agrees with `metabench analyze`'s printout and with reproduce's results.json.

Sign conventions are analysis.py's: entropy drop = other rows - meta rows
(positive: meta rows are sharper, as the paper's 1.40 nats), max-logit
difference = meta rows - other rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from metabench.errors import MetabenchError

ANALYSIS_FILE = "analysis.json"
HINT = "pass an analysis.json written by `metabench analyze CKPT --out DIR` (or DIR itself)"


@dataclass(frozen=True)
class HeadStats:
    """Attention rows of one layer and head, meta-token rows vs the others (nats, logits)."""

    layer: int
    head: int
    entropy_meta: float
    entropy_other: float
    entropy_drop: float
    max_logit_meta: float
    max_logit_other: float
    max_logit_diff: float


@dataclass(frozen=True)
class LayerCosine:
    """Residual-stream cosine with the preceding tokens at one layer (0 = embeddings)."""

    layer: int
    meta: float
    other: float


@dataclass(frozen=True)
class AblationRow:
    """One task and length: primary score (fraction) with full vs zeroed positions at meta-tokens."""

    entry: str
    length: str
    metric: str
    chance: float | None
    full: float
    zeroed: float
    n: int


@dataclass(frozen=True)
class Analysis:
    name: str
    source: Path  # the analysis.json read
    checkpoint: str
    suite: str
    lengths: tuple[str, ...]
    samples: int
    prompts: int
    rows_meta: int  # attention rows averaged over
    rows_other: int
    heads: tuple[HeadStats, ...]
    mean_entropy_meta: float
    mean_entropy_other: float
    mean_entropy_drop: float
    mean_max_logit_diff: float
    paper_entropy_drop: float  # the paper's mean drop, as the file records it (paper.mean_entropy_drop)
    cosine: tuple[LayerCosine, ...]
    ablation: tuple[AblationRow, ...] | None  # None: analysed with --no-ablation
    induction: tuple[float, float] | None = None  # loss on a span's first / second saying; None: older file


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Fields:
    """Typed reads from one file's JSON; every failure names the file and the field."""

    def __init__(self, file: Path):
        self.file = file

    def fail(self, what: str) -> MetabenchError:
        return MetabenchError(f"{self.file}: {what}; {HINT}")

    def get(self, obj: Any, key: str, where: str = "", ok: Callable[[Any], bool] | None = None, kind: str = "") -> Any:
        field = f"{where}.{key}" if where else key
        if not isinstance(obj, dict):
            raise self.fail(f"{where or 'the top level'} is {type(obj).__name__}, not an object")
        if key not in obj:
            raise self.fail(f"{field} is missing")
        if ok is not None and not ok(obj[key]):
            raise self.fail(f"{field} is {str(obj[key])[:40]!r}, not {kind}")
        return obj[key]

    def number(self, obj: Any, key: str, where: str = "") -> float:
        return float(self.get(obj, key, where, _is_number, "a finite number"))

    def count(self, obj: Any, key: str, where: str = "") -> int:
        return self.get(obj, key, where, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a count")

    def text(self, obj: Any, key: str, where: str = "") -> str:
        return self.get(obj, key, where, lambda v: isinstance(v, str), "a string")

    def nonempty(self, obj: Any, key: str, where: str = "") -> list[Any]:
        return self.get(obj, key, where, lambda v: isinstance(v, list) and bool(v), "a non-empty list")


def locate(spec: str | Path) -> tuple[str | None, Path]:
    """`[NAME=]PATH` -> (NAME or None, the analysis.json it names)."""
    name, path = None, Path(spec)
    if isinstance(spec, str) and "=" in spec and not path.exists():
        name, _, rest = spec.partition("=")
        if not name.strip():
            raise MetabenchError(f"--analysis {spec!r}: the NAME before '=' is empty; use NAME=PATH or PATH")
        path = Path(rest)
    file = path / ANALYSIS_FILE if path.is_dir() else path
    if not file.is_file():
        what = f"{path} has no {ANALYSIS_FILE}" if path.is_dir() else f"{path} does not exist"
        raise MetabenchError(f"--analysis: {what}; {HINT}")
    return name, file


def parse_analysis(data: Any, file: Path, name: str | None = None) -> Analysis:
    """The JSON of one analysis.json, validated; `name` defaults to the checkpoint folder's name."""
    f = _Fields(file)
    att = f.get(data, "attention")
    heads = []
    for i, h in enumerate(f.nonempty(att, "per_head", "attention")):
        w = f"attention.per_head[{i}]"
        heads.append(HeadStats(f.count(h, "layer", w), f.count(h, "head", w), *(f.number(h, k, w) for k in (
            "entropy_meta", "entropy_other", "entropy_drop", "max_logit_meta", "max_logit_other", "max_logit_diff"))))
    if len({(h.layer, h.head) for h in heads}) != len(heads):
        raise f.fail("attention.per_head lists a (layer, head) twice")
    cosine = []
    for i, r in enumerate(f.nonempty(data, "residual_cosine")):
        w = f"residual_cosine[{i}]"
        cosine.append(LayerCosine(f.count(r, "layer", w), f.number(r, "cos_meta", w), f.number(r, "cos_other", w)))
    ablation = None
    if "zero_position_ablation" in data:
        ablation = []
        for i, r in enumerate(f.nonempty(data, "zero_position_ablation")):
            w = f"zero_position_ablation[{i}]"
            chance = None if f.get(r, "chance", w) is None else f.number(r, "chance", w)
            ablation.append(AblationRow(f.text(r, "entry", w), f.text(r, "length", w), f.text(r, "metric", w), chance,
                                        f.number(r, "full", w), f.number(r, "zeroed", w), f.count(r, "n", w)))
    induction = None
    if "induction" in data:
        ind = f.get(data, "induction")
        induction = (f.number(ind, "first", "induction"), f.number(ind, "second", "induction"))
    rows = f.get(att, "rows", "attention")
    checkpoint = f.text(data, "checkpoint")
    return Analysis(
        name=name or Path(checkpoint).name or file.parent.name, source=file, checkpoint=checkpoint,
        suite=f.text(data, "suite"), lengths=tuple(map(str, f.nonempty(data, "lengths"))),
        samples=f.count(data, "samples"), prompts=f.count(data, "prompts"),
        rows_meta=f.count(rows, "meta", "attention.rows"), rows_other=f.count(rows, "other", "attention.rows"),
        heads=tuple(sorted(heads, key=lambda h: (h.layer, h.head))),
        mean_entropy_meta=f.number(att, "mean_entropy_meta", "attention"),
        mean_entropy_other=f.number(att, "mean_entropy_other", "attention"),
        mean_entropy_drop=f.number(att, "mean_entropy_drop", "attention"),
        mean_max_logit_diff=f.number(att, "mean_max_logit_diff", "attention"),
        paper_entropy_drop=f.number(f.get(data, "paper"), "mean_entropy_drop", "paper"),
        cosine=tuple(sorted(cosine, key=lambda c: c.layer)),
        ablation=None if ablation is None else tuple(ablation),
        induction=induction,
    )


def load_analysis(spec: str | Path) -> Analysis:
    name, file = locate(spec)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetabenchError(f"{file}: not JSON ({exc}); {HINT}") from None
    return parse_analysis(data, file, name)


def load_analyses(specs: Sequence[str | Path]) -> tuple[Analysis, ...]:
    """Every `--analysis`, in the order given; two under one name are an error (name them NAME=PATH)."""
    out = tuple(load_analysis(s) for s in specs)
    names = [a.name for a in out]
    for n in dict.fromkeys(n for n in names if names.count(n) > 1):
        files = ", ".join(str(a.source) for a in out if a.name == n)
        raise MetabenchError(f"--analysis: {files} share the name {n!r}; tell them apart with NAME=PATH")
    return out
