"""Evaluate a training run's checkpoints as they appear: `metabench watch DIR --out OUT [run's flags]`.

A checkpoint is a folder directly under DIR whose name carries a step
(checkpoint-N, step-N, global_stepN: results.step_of). Each is evaluated
once, in step order, by the runner (`hf:DIR/NAME`, with `run`'s options)
into OUT/NAME/, recording step N, so OUT is a series for `metabench report`
and `check --series`.

Resumable: the runner resumes a folder a killed watch left half done, and
returns a finished folder's summary without loading its model (the weights'
fingerprint is reused while their size and mtime hold). `--follow` polls
DIR every `interval` seconds for new checkpoints until stopped.

A checkpoint is evaluated only when complete: config.json and weights
present, every shard an index names present, every safetensors file as long
as its header says, and no file in it changed during the last `settle`
seconds (a trainer may still be writing). Under --follow an incomplete one
is waited for; without it, one still changing is waited for until it
settles, and one missing files is reported. A checkpoint that cannot be
evaluated (damaged, unreadable, refused) is reported in one line and the
others go on; under --follow it is tried again once its files change.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from metabench.backends import WEIGHT_SUFFIXES, folder_stat
from metabench.errors import MetabenchError
from metabench.results import step_of
from metabench.runner import RunConfig, format_table, run

INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class WatchConfig:
    root: Path  # DIR: the folder holding the checkpoint folders
    out: Path  # OUT: one results folder per checkpoint, named as it
    run: RunConfig  # every checkpoint's run; its model, out and step are set per checkpoint
    follow: bool = False
    interval: float = 60.0  # seconds between polls under follow
    settle: float = 10.0  # a checkpoint with a file changed more recently is still being written


def checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint folder directly under `root`, by step."""
    if not root.is_dir():
        raise MetabenchError(f"{root} is not a folder; give the folder holding checkpoint-N (or step-N, global_stepN) folders")
    found = [(step_of(p.name), p) for p in root.iterdir() if p.is_dir()]
    return sorted((s, p) for s, p in found if s is not None)


def incomplete(folder: Path, settle: float, now: float) -> str | None:
    """Why `folder` is not a complete checkpoint yet, or None when it is."""
    try:
        return _missing(folder, settle, now)
    except OSError as exc:  # a file renamed or removed while we look (a trainer rotating its checkpoints)
        return f"its files are changing ({exc.strerror or exc})"


def _missing(folder: Path, settle: float, now: float) -> str | None:
    if not (folder / "config.json").is_file():
        return "no config.json yet"
    for name in INDEXES:
        if (folder / name).is_file():
            try:
                shards = set(json.loads((folder / name).read_text(encoding="utf-8"))["weight_map"].values())
            except (ValueError, KeyError, TypeError, AttributeError):
                return f"{name} is not readable yet"
            missing = sorted(s for s in shards if not (folder / s).is_file())
            if missing:
                return f"shard {missing[0]} missing"
    weights = [p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()]
    if not weights:
        return "no weights yet"
    for p in weights:
        if p.suffix == ".safetensors" and not _whole_safetensors(p):
            return f"{p.name} is shorter than its header says"
    age = now - _newest(folder)
    if age < settle:
        return f"a file changed {age:.0f} s ago"
    return None


def _newest(folder: Path) -> float:
    """The mtime of the folder's most recently changed file."""
    return max((p.stat().st_mtime for p in folder.iterdir()), default=folder.stat().st_mtime)


def _settle(folder: Path, settle: float) -> None:
    """Wait until no file in `folder` has changed for `settle` seconds (a one-off pass waits for a trainer's write)."""
    try:
        while (left := settle - (time.time() - _newest(folder))) > 0:
            time.sleep(left)
    except OSError:  # gone or changing: `incomplete` says so next
        return


def _whole_safetensors(path: Path) -> bool:
    """A safetensors file is 8 bytes of header length, the JSON header, then exactly the data the header places."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return False
    return path.stat().st_size == 8 + n + end


def watch(cfg: WatchConfig, say: Callable[[str], None] | None = None) -> int:
    """Evaluate every complete checkpoint under cfg.root not evaluated yet; under follow, poll until stopped.
    Returns how many checkpoints could not be evaluated (each reported in one line)."""
    say = say or (lambda line: print(line, flush=True))
    done: set[str] = set()  # evaluated or found finished in this process: never looked at again
    failed: dict[str, Any] = {}  # name -> its files' stat when it failed: tried again once they change
    waiting: dict[str, str] = {}  # name -> the reason last said, so a wait is said once
    while True:
        found = checkpoints(cfg.root)
        if not found and not cfg.follow:
            raise MetabenchError(f"{cfg.root} holds no checkpoint folders (checkpoint-N, step-N or global_stepN)")
        if not found and "" not in waiting:
            say(f"waiting for checkpoint folders in {cfg.root}")
            waiting[""] = "none"
        for step, folder in found:
            name = folder.name
            if name in done or (name in failed and failed[name] == _stat(folder)):
                continue
            if not cfg.follow:
                _settle(folder, cfg.settle)
            why = incomplete(folder, cfg.settle, time.time())
            if why is not None:
                if not cfg.follow:
                    say(f"{name}: not evaluated: incomplete checkpoint ({why})")
                    failed[name] = _stat(folder)
                elif waiting.get(name) != why:
                    say(f"{name}: waiting ({why})")
                    waiting[name] = why
                continue
            try:
                _evaluate(cfg, folder, step, say)
            except (MetabenchError, OSError, RuntimeError, ValueError) as exc:  # one bad checkpoint stops no other
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                say(f"{name}: not evaluated: {first}")
                failed[name] = _stat(folder)
                continue
            failed.pop(name, None)
            done.add(name)
        if not cfg.follow:
            return len(failed)
        time.sleep(cfg.interval)


def _evaluate(cfg: WatchConfig, folder: Path, step: int, say: Callable[[str], None]) -> None:
    out = cfg.out / folder.name
    finished = (out / "summary.json").is_file()
    run_cfg = dataclasses.replace(cfg.run, model=f"hf:{folder}", out=out, step=step)
    if not finished:
        say(f"{folder.name}: evaluating step {step} -> {out}")
    summary = run(run_cfg)
    if finished and summary == json.loads((out / "summary.json").read_text(encoding="utf-8")):
        say(f"{folder.name}: already evaluated in {out}")
        return
    say(format_table(summary))
    say(f"{folder.name}: evaluated step {step} -> {out}")


def _stat(folder: Path) -> Any:
    try:
        return folder_stat(folder)
    except OSError:
        return None
