"""The trust_remote_code copies under reference_model/*/ are metabench/model's sources, byte for byte.

save_pretrained copies the files named by config.json's auto_map, and every
file they import relatively, next to a checkpoint. The bundled checkpoints
were saved once; this keeps their copies from drifting when the model code
changes (copy the source file over: the weights do not depend on it).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "metabench" / "model"
CHECKPOINTS = sorted(p.parent for p in (ROOT / "reference_model").glob("*/config.json"))


def remote_code_files(config: dict) -> set[str]:
    """The auto_map modules and, transitively, their relative imports: what save_pretrained copies."""
    todo = [ref.split(".")[0] + ".py" for ref in config["auto_map"].values()]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse((SOURCE / name).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                todo += [f"{node.module}.py"] if node.module else [f"{a.name}.py" for a in node.names]
    return seen


def test_there_are_bundled_checkpoints():
    assert len(CHECKPOINTS) >= 4


@pytest.mark.parametrize("folder", CHECKPOINTS, ids=lambda p: p.name)
def test_copies_equal_their_sources(folder):
    needed = remote_code_files(json.loads((folder / "config.json").read_text()))
    assert {"modeling_meta.py", "configuration_meta.py", "model.py", "rope.py"} <= needed
    present = {p.name for p in folder.glob("*.py")}
    assert needed <= present, f"{folder.name} lacks {sorted(needed - present)}: copy them from metabench/model/"
    for name in sorted(present):
        source = SOURCE / name
        assert source.is_file(), f"{folder.name}/{name} has no source in metabench/model/"
        assert (folder / name).read_bytes() == source.read_bytes(), (
            f"reference_model/{folder.name}/{name} differs from metabench/model/{name}: copy the source over it"
        )
