"""Loud checks of a checkpoint directory, before transformers reads it.

Given a truncated safetensors file transformers raises a low-level error, and
given weights that lack keys it random-initialises them with a warning. A
reference model must do neither, so `MetaForCausalLM.from_pretrained` runs
`check_checkpoint` on local directories first: every expected tensor present,
with the shape the config implies, in files that are whole. Reads headers
only. Copied next to saved checkpoints (trust_remote_code).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header, checking that the data is all there."""
    size = path.stat().st_size
    fix = f"re-save the model with save_pretrained or copy {path.name} again"
    if size < 8:
        raise ValueError(f"{path} is truncated ({size} bytes, not even a header): {fix}")
    with path.open("rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        if 8 + header_len > size:
            raise ValueError(f"{path} is truncated: its header says {header_len} bytes, the file has {size}: {fix}")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is corrupt (unreadable header: {err}): {fix}") from err
    if not isinstance(header, dict):
        raise ValueError(f"{path} is corrupt (header is not a JSON object): {fix}")
    data_len = size - 8 - header_len
    shapes: dict[str, tuple[int, ...]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = info["data_offsets"]
            shapes[name] = tuple(int(d) for d in info["shape"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} is corrupt (bad entry for {name!r}): {fix}") from err
        if end > data_len or start > end:
            raise ValueError(
                f"{path} is truncated: tensor {name!r} ends at byte {end} of the data, "
                f"but only {data_len} bytes are there: {fix}"
            )
    return shapes


def checkpoint_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """All tensor shapes in a directory's safetensors weights (single file or sharded)."""
    index = directory / WEIGHTS_INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{index} is corrupt ({err}): re-save the model with save_pretrained") from err
        shards = sorted(set(weight_map.values()))
    elif (directory / WEIGHTS_NAME).is_file():
        shards = [WEIGHTS_NAME]
    else:
        present = sorted(p.name for p in directory.iterdir())
        raise ValueError(
            f"{directory} has no {WEIGHTS_NAME} (nor {WEIGHTS_INDEX_NAME}); it holds {present}. "
            "This model loads safetensors weights only: save it with save_pretrained"
        )
    shapes: dict[str, tuple[int, ...]] = {}
    for shard in shards:
        path = directory / shard
        if not path.is_file():
            raise ValueError(f"{directory} is incomplete: shard {shard} named in {WEIGHTS_INDEX_NAME} is missing")
        shapes.update(safetensors_shapes(path))
    return shapes


def check_checkpoint(
    directory: Path, expected: Mapping[str, tuple[int, ...]], tied: frozenset[str] = frozenset()
) -> None:
    """Raise ValueError unless the weights in `directory` match `expected` exactly.

    expected: parameter name -> shape that the config implies. tied: names that
    are saved once under another name (the tied lm_head), so may be absent.
    """
    found = checkpoint_shapes(directory)
    missing = sorted(set(expected) - set(found) - set(tied))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(name for name in set(found) & set(expected) if found[name] != tuple(expected[name]))
    problems = []
    if mismatched:
        shown = ", ".join(f"{n}: weights {found[n]} vs config {tuple(expected[n])}" for n in mismatched[:4])
        problems.append(f"{len(mismatched)} tensors do not match config.json's shapes ({shown})")
    if missing:
        problems.append(f"{len(missing)} tensors are missing ({', '.join(missing[:4])})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors are not part of this model ({', '.join(unexpected[:4])})")
    if problems:
        raise ValueError(
            f"checkpoint {directory} does not match its config: {'; '.join(problems)}. "
            "config.json must describe the model the weights came from (layers, sizes, vocab, "
            "meta_attention, position_encoding): restore the config it was saved with"
        )
