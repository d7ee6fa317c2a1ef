"""`metabench lm-eval ARGS...`: lm-eval's own CLI with metabench's task folder included.

lm-eval 0.4.13 has no entry point through which a package can offer tasks,
so the wrapper adds `--include_path <installed metabench/lm_eval/tasks>` and
hands everything else to lm-eval unchanged (its `run` subcommand unless ARGS
start with `ls` or `validate`). It works from a wheel: the YAMLs are package
data. It runs lm-eval in this process, through lm-eval's console-script
function, so a metabench error (bad --metadata, lengths that would be cut)
prints as one line instead of a traceback.
"""

from __future__ import annotations

import sys
from typing import Sequence

from metabench.errors import MetabenchError
from metabench.lm_eval import TASKS_DIR

SUBCOMMANDS = ("run", "ls", "validate")  # lm-eval's; the ones that take --include_path


def lm_eval_argv(args: Sequence[str]) -> list[str]:
    """The argv lm-eval gets: its subcommand, the user's arguments, then our task folder."""
    args = list(args)
    if any(a == "--include_path" or a.startswith("--include_path=") for a in args):
        raise MetabenchError(
            "metabench lm-eval adds its own --include_path (lm-eval takes only one); to combine metabench's tasks "
            f"with yours, put both in one folder, or run lm_eval --include_path with a folder holding {TASKS_DIR}'s YAMLs"
        )
    command = args.pop(0) if args and args[0] in SUBCOMMANDS else "run"
    if not args or args in (["-h"], ["--help"]):
        return ["lm-eval", command, *args]
    return ["lm-eval", command, *args, "--include_path", str(TASKS_DIR)]


def metadata_help() -> str:
    """metabench's own `--metadata` keys, printed before lm-eval's help."""
    from metabench.lm_eval.settings import METADATA_KEYS

    width = max(map(len, METADATA_KEYS))
    keys = "\n".join(f"  {k:<{width}}  {text}" for k, text in METADATA_KEYS.items())
    return (
        "metabench lm-eval: lm-eval with metabench's tasks (the groups metabench_all and metabench_ruler, and\n"
        "each metabench_* task: `metabench lm-eval ls tasks`). metabench's options go in --metadata, e.g.\n"
        "--metadata max_seq_lengths=[0.5x,1x,2x] samples=50:\n" + keys + "\n\nlm-eval's own help follows.\n"
    )


def main(args: Sequence[str]) -> int:
    """Run lm-eval's CLI; returns its exit status."""
    if list(args) in ([], ["-h"], ["--help"], ["run", "-h"], ["run", "--help"]):
        print(metadata_help())
    try:
        from lm_eval.__main__ import cli_evaluate
    except ImportError as exc:
        raise MetabenchError(f"lm-eval is not installed ({exc}); pip install 'metabench[lm-eval]'") from exc
    saved = sys.argv
    sys.argv = lm_eval_argv(args)
    try:
        cli_evaluate()
    except SystemExit as exc:  # argparse and lm-eval exit this way; keep their status
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0
