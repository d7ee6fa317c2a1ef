"""The `metabench` command: thin subcommands over the library.

Each subcommand parses its flags, builds the library's config objects and
calls the library. A `MetabenchError` (bad input) is printed as one line,
`metabench: error: ...`, with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from metabench.errors import MetabenchError


def _cmd_tasks(args: argparse.Namespace) -> int:
    from metabench.tasks import FAMILIES

    for family, variants in FAMILIES.items():
        first = next(iter(variants.values()))
        print(f"{family:<14} {first.description}")
        for name, spec in variants.items():
            defaults = type(spec)()
            changed = {k: v for k, v in spec.params().items() if v != defaults.params()[k]}
            detail = ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults"
            print(f"  {name:<16} {detail}; metrics: {', '.join(spec.metrics)}")
    return 0


def _parse_params(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """'--param keys=8' applies to every task that has `keys`; '--param needle.keys=8' to one family."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        if "=" not in item:
            raise MetabenchError(f"--param {item!r}: write KEY=VALUE or TASK.KEY=VALUE")
        key, value = item.split("=", 1)
        family, _, name = key.rpartition(".")
        out.setdefault(family, {})[name.strip()] = value.strip()
    return out


def _build_suite(args: argparse.Namespace):
    from metabench.suite import Entry, load_suite
    from metabench.tasks import FAMILIES, parse_task, resolve

    suite = load_suite(args.suite)
    entries = suite.entries
    if args.tasks:
        chosen = []
        for text in args.tasks.split(","):
            family, variant = parse_task(text)
            spec = resolve(family, variant)
            variant = variant or next(iter(FAMILIES[family]))
            samples = next((e.samples for e in suite.entries if e.task == family), entries[0].samples)
            chosen.append(Entry(f"{family}/{variant}", family, variant, spec, samples))
        entries = tuple(chosen)
    params = _parse_params(args.param or [])
    if params:
        families = {e.task for e in entries}
        for fam in params:
            if fam and fam not in families:
                raise MetabenchError(f"--param {fam}.…: task {fam} is not in this run (tasks: {', '.join(sorted(families))})")
        updated = []
        generic = params.get("", {})
        for key in generic:
            if not any(key in e.spec.params() for e in entries):
                raise MetabenchError(f"--param {key}: no task in this run has that parameter (see `metabench tasks`)")
        for e in entries:
            p = {k: v for k, v in generic.items() if k in e.spec.params()}
            p.update(params.get(e.task, {}))
            if p:
                merged = {**e.spec.params(), **p}
                e = Entry(e.name, e.task, e.variant, resolve(e.task, e.variant, merged), e.samples)
            updated.append(e)
        entries = tuple(updated)
    lengths = tuple(x.strip() for x in args.lengths.split(",") if x.strip()) if args.lengths else None
    return suite.with_overrides(seed=args.seed, lengths=lengths, samples=args.samples, entries=entries)


def _cmd_generate(args: argparse.Namespace) -> int:
    from metabench.generate import Options, generate_to_file
    from metabench.tokenizer import load_tokenizer

    suite = _build_suite(args)
    if args.context is not None and args.context <= 0:
        raise MetabenchError(f"--context must be a positive number of tokens, got {args.context}")
    tok = load_tokenizer(args.tokenizer)
    opts = Options(
        context=args.context,
        marker=args.marker,
        chat_template=args.chat_template,
        haystack_files=tuple(args.haystack or ()),
        verify=args.verify_lengths,
    )
    n = generate_to_file(suite, tok, opts, args.out, progress=not args.quiet)
    print(f"wrote {n} samples to {args.out}")
    return 0


def default_tokenizer() -> str:
    """The reference model's tokenizer, bundled with the package."""
    return str(Path(__file__).parent / "assets" / "tokenizer")


def build_parser() -> argparse.ArgumentParser:
    from metabench import __version__

    p = argparse.ArgumentParser(prog="metabench", description="Long-context evaluation harness.")
    p.add_argument("--version", action="version", version=f"metabench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tasks", help="list task families and their variants")
    t.set_defaults(func=_cmd_tasks)

    g = sub.add_parser("generate", help="generate a suite's samples at exact token lengths (JSONL)")
    g.add_argument("--suite", default="default", help="bundled suite name or YAML path (default: default)")
    g.add_argument("--tokenizer", default=default_tokenizer(), help="local tokenizer or model folder (default: the bundled reference tokenizer)")
    g.add_argument("--context", type=int, help="the model's context in tokens; lengths like 2x resolve against it")
    g.add_argument("--lengths", help="comma-separated lengths overriding the suite's: 0.5x,1x,2x or 1024,4k")
    g.add_argument("--samples", type=int, help="samples per task and length, overriding the suite's")
    g.add_argument("--seed", type=int, help="suite seed override")
    g.add_argument("--tasks", help="comma-separated task[:variant] list replacing the suite's tasks")
    g.add_argument("--param", action="append", metavar="[TASK.]KEY=VALUE", help="override a task parameter (repeatable)")
    g.add_argument("--marker", help="insert this meta-token string at each task's meta-token positions")
    g.add_argument("--chat-template", action="store_true", help="wrap prompts in the tokenizer's chat template")
    g.add_argument("--haystack", nargs="+", metavar="FILE", help="use these text files as filler instead of procedural text")
    g.add_argument("--verify-lengths", action="store_true", help="tokenize every prompt in full (slower; the default count is already exact for tokenizers that pass the additivity check)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--out", required=True, help="output JSONL file")
    g.set_defaults(func=_cmd_generate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MetabenchError as exc:
        print(f"metabench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metabench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
