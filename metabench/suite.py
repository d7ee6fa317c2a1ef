"""Suites: which tasks, variants, lengths and samples per length, as YAML.

    name: default
    seed: 0
    lengths: [0.25x, 0.5x, 1x, 1.5x, 2x]   # context multiples or tokens
    samples: 20                            # per task and length
    tasks:
      - task: needle
        variant: multikey
        samples: 10                        # optional per-entry override
        params: {depths: [0, 0.5, 1]}      # optional spec overrides
        name: needle/multikey-3depths      # optional, defaults to task/variant

Bundled suites live in metabench/suites/; `load_suite` takes a bundled name
or a path. Every error names the file and the key to fix.

`customize` applies a command line's overrides to a loaded suite: `tasks`
replaces its entries (each takes the samples of the suite's entry of the same
family, or of its first entry), `params` ("KEY=VALUE" for every task that has KEY, "TASK.KEY=VALUE"
for one family) are merged over each entry's spec, then seed, lengths and
samples replace the suite's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from metabench.errors import MetabenchError
from metabench.tasks import FAMILIES, TaskSpec, parse_task, resolve

SUITES_DIR = Path(__file__).parent / "suites"
_TOP_KEYS = {"name", "description", "seed", "lengths", "samples", "tasks"}
_ENTRY_KEYS = {"task", "variant", "samples", "params", "name"}
MAX_SAMPLES = 10**7  # per run: the runner plans every sample id of a length up front


@dataclass(frozen=True)
class Entry:
    name: str
    task: str
    variant: str
    spec: TaskSpec
    samples: int


@dataclass(frozen=True)
class Suite:
    name: str
    seed: int
    lengths: tuple[str, ...]
    entries: tuple[Entry, ...]
    description: str = ""
    source: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"suite {self.source or self.name}"
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise MetabenchError(f"{where}: seed (its `seed:` key or --seed) must be a non-negative integer, got {self.seed!r}")
        total = sum(e.samples for e in self.entries) * len(self.lengths)
        if total > MAX_SAMPLES:
            raise MetabenchError(f"{where} asks for {total} samples (tasks x lengths x samples); "
                                 f"at most {MAX_SAMPLES} per run: lower --samples or split the run")
        names = [e.name for e in self.entries]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # one sample id per (entry, length, index): a repeated entry would count its samples twice
            raise MetabenchError(f"{where}: entry {twice[0]!r} appears twice; give each entry once")

    def with_overrides(
        self,
        seed: int | None = None,
        lengths: tuple[str, ...] | None = None,
        samples: int | None = None,
        entries: tuple[Entry, ...] | None = None,
    ) -> "Suite":
        out = self
        if seed is not None:
            out = dataclasses.replace(out, seed=seed)
        if lengths is not None:
            out = dataclasses.replace(out, lengths=lengths)
        if entries is not None:
            out = dataclasses.replace(out, entries=entries)
        if samples is not None:
            if samples <= 0:
                raise MetabenchError(f"--samples must be a positive number, got {samples}")
            out = dataclasses.replace(out, entries=tuple(dataclasses.replace(e, samples=samples) for e in out.entries))
        return out


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a mapping with a key twice (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise MetabenchError(f"key {key!r} appears twice in one mapping (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def bundled_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise MetabenchError(f"{where} must be a positive integer, got {value!r}")
    return value


def load_suite(name_or_path: str | Path) -> Suite:
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise MetabenchError(
                f"unknown suite {name_or_path!r}: give a YAML file or one of: {', '.join(bundled_suites())}"
            )
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except MetabenchError as exc:
        raise MetabenchError(f"suite {path}: {exc}") from None
    except OSError as exc:
        raise MetabenchError(f"cannot read suite {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise MetabenchError(f"suite {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    return parse_suite(data, str(path))


def parse_suite(data: Any, source: str = "<suite>") -> Suite:
    where = f"suite {source}"
    if not isinstance(data, dict):
        raise MetabenchError(f"{where}: expected a mapping with keys {sorted(_TOP_KEYS)}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise MetabenchError(f"{where}: unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    for key in ("tasks", "lengths"):
        if key not in data:
            raise MetabenchError(f"{where}: missing key {key!r}")
    seed = data.get("seed", 0)  # checked by Suite, for YAML and --seed alike
    lengths = data["lengths"]
    if not isinstance(lengths, list) or not lengths:
        raise MetabenchError(f"{where}: key 'lengths' must be a non-empty list such as [0.5x, 1x, 2x]")
    default_samples = _positive_int(data.get("samples", 10), f"{where}: key 'samples'")
    tasks = data["tasks"]
    if not isinstance(tasks, list) or not tasks:
        raise MetabenchError(f"{where}: key 'tasks' must be a non-empty list of {{task: ..., variant: ...}}")
    entries: list[Entry] = []
    names: set[str] = set()
    for i, item in enumerate(tasks):
        at = f"{where}: tasks[{i}]"
        if isinstance(item, str):
            item = {"task": item}
        if not isinstance(item, dict) or "task" not in item:
            raise MetabenchError(f"{at}: expected a mapping with a 'task' key")
        unknown = set(item) - _ENTRY_KEYS
        if unknown:
            raise MetabenchError(f"{at}: unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(_ENTRY_KEYS))})")
        params = item.get("params") or {}
        if not isinstance(params, dict):
            raise MetabenchError(f"{at}.params: expected a mapping of parameter: value")
        try:
            spec = resolve(str(item["task"]), str(item.get("variant") or ""), params)
        except MetabenchError as exc:
            raise MetabenchError(f"{at}: {exc}") from exc
        variant = str(item.get("variant") or "") or next(iter(FAMILIES[spec.family]))
        samples = _positive_int(item.get("samples", default_samples), f"{at}.samples")
        name = str(item.get("name") or f"{spec.family}/{variant}")
        if name in names:
            raise MetabenchError(f"{at}: entry name {name!r} appears twice; give one a distinct 'name'")
        names.add(name)
        entries.append(Entry(name, spec.family, variant, spec, samples))
    return Suite(
        name=str(data.get("name") or Path(source).stem),
        seed=seed,
        lengths=tuple(str(x) for x in lengths),
        entries=tuple(entries),
        description=str(data.get("description") or ""),
        source=source,
    )


def parse_params(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """'keys=8' applies to every task that has `keys` (family ""); 'needle.keys=8' to one family."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        if "=" not in item:
            raise MetabenchError(f"--param {item!r}: write KEY=VALUE or TASK.KEY=VALUE")
        key, value = item.split("=", 1)
        family, _, name = key.rpartition(".")
        out.setdefault(family, {})[name.strip()] = value.strip()
    return out


def select_tasks(suite: Suite, tasks: Sequence[str]) -> tuple[Entry, ...]:
    """Entries for 'family[:variant]' names; samples: the suite's entry of that family's, else its first entry's."""
    chosen = []
    for text in tasks:
        family, variant = parse_task(text)
        spec = resolve(family, variant)
        variant = variant or next(iter(FAMILIES[family]))
        samples = next((e.samples for e in suite.entries if e.task == family), suite.entries[0].samples)
        name = f"{family}/{variant}"
        if any(e.name == name for e in chosen):
            raise MetabenchError(f"--tasks names {name} twice; give each task once (a sample would count twice)")
        chosen.append(Entry(name, family, variant, spec, samples))
    return tuple(chosen)


def _fields(spec: TaskSpec) -> set[str]:
    """A spec's parameter names (its params() may leave one out at its default)."""
    return {f.name for f in dataclasses.fields(spec)}


def apply_params(entries: tuple[Entry, ...], params: dict[str, dict[str, str]]) -> tuple[Entry, ...]:
    """Entries with parse_params' overrides merged over their specs; a key no entry has is an error."""
    families = {e.task for e in entries}
    for fam in params:
        if fam and fam not in families:
            raise MetabenchError(f"--param {fam}.…: task {fam} is not in this run (tasks: {', '.join(sorted(families))})")
    generic = params.get("", {})
    for key in generic:
        if not any(key in _fields(e.spec) for e in entries):
            raise MetabenchError(f"--param {key}: no task in this run has that parameter (see `metabench tasks`)")
    updated = []
    for e in entries:
        p = {k: v for k, v in generic.items() if k in _fields(e.spec)}
        p.update(params.get(e.task, {}))
        if p:
            merged = {**e.spec.params(), **p}
            e = Entry(e.name, e.task, e.variant, resolve(e.task, e.variant, merged), e.samples)
        updated.append(e)
    return tuple(updated)


def customize(
    suite: Suite,
    tasks: Sequence[str] | None = None,
    params: Sequence[str] = (),
    seed: int | None = None,
    lengths: tuple[str, ...] | None = None,
    samples: int | None = None,
) -> Suite:
    """`suite` with a command line's overrides (see the module docstring); None or empty keeps the suite's."""
    entries = select_tasks(suite, tasks) if tasks else suite.entries
    parsed = parse_params(params)
    if parsed:
        entries = apply_params(entries, parsed)
    return suite.with_overrides(seed=seed, lengths=lengths, samples=samples, entries=entries)
