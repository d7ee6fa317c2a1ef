"""A run's results folder: made, checked against the run's identity, resumed, and read back when finished.

The runner (metabench/runner.py) holds the folder's lock (metabench/lock.py)
around all of this; the files are those metabench/results.py documents.

- `read_config` / `open_folder`: config.json records the run's identity; a
  later start with a different identity is refused naming the keys that
  differ (rows kept), the same identity resumes from the rows already there
  after `drop_torn_line` cuts a line a killed run left half-written. A folder
  with config.json but no rows is not a run yet (a start that failed): the
  next command takes it over.
- `finished_summary`: a run whose every sample is scored returns its summary
  without loading the model.
- `disk`: a full disk while writing is one line; written rows stay.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from metabench import __version__
from metabench.errors import MetabenchError, warn
from metabench.lock import LOCK_NAME
from metabench.results import SUMMARY_FORMAT, check_counts, load_rows, write_json
from metabench.schema import dumps


def utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# What a differing identity key means, for the message that refuses to mix two runs.
CHANGED = {
    "weights": "the model folder's weights or config.json changed",
    "tokenizer": "the tokenizer's files changed",
    "model": "another --model",
}


def read_config(out: Path) -> dict[str, Any] | None:
    """The folder's config.json, or None when it holds none (or holds no rows yet: not a run)."""
    path = out / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        config["identity"]["model"]
    except (ValueError, KeyError, TypeError):
        if not has_rows(out):
            return None
        raise MetabenchError(f"{path} is damaged; use a new --out folder") from None
    return config


def has_rows(out: Path) -> bool:
    results = out / "results.jsonl"
    return results.is_file() and results.stat().st_size > 0


def open_folder(out: Path, identity: dict[str, Any], old: dict[str, Any] | None,
                 weights: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Validate the results folder against `identity` (or start it); return the rows already scored.

    A folder whose config.json has no rows next to it is not a run yet (a
    start that failed): the new command takes it over.
    """
    results = out / "results.jsonl"
    if old is not None and has_rows(out):
        old_n, new_n = json.loads(dumps(old["identity"])), json.loads(dumps(identity))
        if "weights" not in old_n:  # a folder from before weights were part of the identity
            new_n.pop("weights", None)
        if old_n != new_n:
            diff = sorted(k for k in set(old_n) | set(new_n) if old_n.get(k) != new_n.get(k))
            named = ", ".join(f"{k} ({CHANGED[k]})" if k in CHANGED else k for k in diff)
            raise MetabenchError(
                f"{out} holds a run with different settings ({named} differ); its rows are kept: rerun with the "
                "original arguments and files to resume, or use a new --out folder"
            )
        if weights is not None and old.get("weights") != weights:  # same hashes, new stat: record it
            write_json(out / "config.json", {**old, "weights": weights})
    elif old is None and any(p.name != LOCK_NAME for p in out.iterdir()) and not (out / "config.json").is_file():
        raise MetabenchError(f"{out} is not empty and holds no metabench run; use a new --out folder")
    else:
        write_json(out / "config.json", {"identity": identity, "weights": weights, "created_at": utc(),
                                         "metabench_version": __version__})
    if not results.is_file():
        return []
    drop_torn_line(results)
    return load_rows(results)


def drop_torn_line(path: Path) -> None:
    """A run killed mid-write leaves a last line without newline: cut it off before appending."""
    with open(path, "r+b") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        f.truncate(f.read().rfind(b"\n") + 1)


def finished_summary(out: Path, ids: Iterable[str], name: str | None, rows: list[dict[str, Any]],
                     done: set[str]) -> dict[str, Any] | None:
    """The summary of a run that has every row already, or None when there is work left.

    Rerunning a finished run changes nothing: summary.json keeps the provenance of
    the sessions that produced the rows (rewriting it would record a later commit,
    0 s of generation and a start time of the rerun), and no model is loaded.
    `ids` are every sample id the run asks for; `name` its --name. A summary in another format, under another --name, damaged, or counting
    other samples than the rows (a row written twice), is rebuilt from the rows.
    """
    path = out / "summary.json"
    if not path.exists() or not all(i in done for i in ids):
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(summary, dict) or summary.get("format") != SUMMARY_FORMAT:
            raise ValueError(f"not a summary in format {SUMMARY_FORMAT}")
        if not isinstance(summary.get("cells"), list) or not isinstance(summary.get("model"), dict):
            raise ValueError("no cells or no model")
        check_counts(summary, rows, out)
    except (ValueError, KeyError) as exc:  # MetabenchError (check_counts) and JSONDecodeError are ValueErrors
        warn(f"{path} is rebuilt from the rows: {exc}")
        return None
    renamed = name is not None and summary["model"].get("name") != name
    return None if renamed else summary


@contextlib.contextmanager
def disk(out: Path) -> Iterator[None]:
    """A full disk (or quota, or a file system gone read-only) while writing: one line; written rows stay."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO):
            raise
        raise MetabenchError(f"cannot write to {out}: {exc.strerror}; the rows already written are kept: "
                             "free space and rerun the same command to resume") from None


def make_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise MetabenchError(f"--out {out} is a file; give a folder for the results")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MetabenchError(f"cannot create --out {out}: {exc.strerror or exc}; give a writable folder") from None
