"""metabench.evaluate on a model in memory: the same rows as `metabench run` on the model saved to disk, the
model left as it was found (mode, device, no gradients), and the one-line refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "reference_model" / "tiny"


def _rows(folder: Path) -> list[dict]:
    rows = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("latency_s")
    return sorted(rows, key=lambda r: r["id"])


def _load_tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from metabench.model import register

    register()
    return AutoModelForCausalLM.from_pretrained(str(TINY)), AutoTokenizer.from_pretrained(str(TINY))


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, Path]:
    """`metabench run --model hf:reference_model/tiny` on the smoke suite at 1x, scored both ways."""
    tmp = tmp_path_factory.mktemp("cli")
    for scoring in ("generate", "loglik"):
        r = subprocess.run([sys.executable, "-m", "metabench", "run", "--quiet", "--model", f"hf:{TINY}", "--suite",
                            "smoke", "--lengths", "1x", "--scoring", scoring, "--out", str(tmp / scoring)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return {s: tmp / s for s in ("generate", "loglik")}


@pytest.mark.slow
@pytest.mark.parametrize("scoring", ["generate", "loglik"])
def test_same_rows_as_the_cli_and_the_model_left_as_found(cli_runs, scoring, tmp_path):
    """A model in train mode, with a transformers tokenizer object: the rows equal the CLI's on the saved model,
    the summary's cells too; afterwards the model is in train mode again, nothing recorded a gradient."""
    import torch

    import metabench

    model, tok = _load_tiny()
    model.train()
    model.model.h[0].eval()  # a part the caller froze in eval mode stays so
    grad_on = []
    hook = model.register_forward_hook(lambda m, i, o: grad_on.append(torch.is_grad_enabled() or o.logits.requires_grad))
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    result = metabench.evaluate(model, tok, suite="smoke", lengths=["1x"], scoring=scoring, out=tmp_path / "api",
                                step=7)
    hook.remove()
    assert _rows(tmp_path / "api") == _rows(cli_runs[scoring])
    cli = json.loads((cli_runs[scoring] / "summary.json").read_text())
    assert result.summary["cells"] == cli["cells"] and result.summary["model"]["context"] == cli["model"]["context"]
    assert json.loads((tmp_path / "api" / "summary.json").read_text()) == result.summary
    assert result.summary["step"] == 7 and result.summary["scoring"] == scoring and result.out == tmp_path / "api"
    assert result.summary["provenance"]["backend"]["in_memory"] is True
    assert grad_on and not any(grad_on)
    assert all(p.grad is None for p in model.parameters())
    assert model.training and not model.model.h[0].training and model.model.h[1].training
    assert (next(model.parameters()).device, next(model.parameters()).dtype) == (device, dtype)
    assert result.table.splitlines()[0] == "1x = 256 tokens (max_position_embeddings 256)"
    assert set(result.scores()) == {f"{c['entry']}@1x" for c in cli["cells"] if c["depth"] is None}


@pytest.mark.slow
def test_without_out_and_resume_against_changed_weights(tmp_path):
    """No out: a temporary folder, the summary returned. Resuming a folder after the weights changed in memory is
    refused in one line, its rows kept; the same weights resume (nothing to do)."""
    import torch

    import metabench
    from metabench.errors import MetabenchError

    model, _ = _load_tiny()
    kw = dict(suite="smoke", tasks=["kv_recall:single"], lengths="1x", samples=2)
    result = metabench.evaluate(model, str(TINY), **kw)
    assert result.out is None and [c["n"] for c in result.summary["cells"] if c["depth"] is None] == [2]
    out = tmp_path / "run"
    first = metabench.evaluate(model, str(TINY), out=out, **kw)
    assert first.summary["cells"] == result.summary["cells"]
    assert metabench.evaluate(model, str(TINY), out=out, **kw).summary == first.summary
    rows = (out / "results.jsonl").read_text()
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    with pytest.raises(MetabenchError, match=r"weights \(") as exc:
        metabench.evaluate(model, str(TINY), out=out, **kw)
    assert "\n" not in str(exc.value) and (out / "results.jsonl").read_text() == rows


@pytest.mark.slow
def test_window_from_the_config_else_context(tmp_path):
    """A config that states no window needs context=; refused in one line without it."""
    import metabench
    from metabench.errors import MetabenchError

    model, _ = _load_tiny()
    model.config.max_position_embeddings = None
    kw = dict(suite="smoke", tasks=["kv_recall:single"], lengths="1x", samples=1)
    with pytest.raises(MetabenchError, match="states no window .*pass context=N") as exc:
        metabench.evaluate(model, str(TINY), **kw)
    assert "\n" not in str(exc.value)
    result = metabench.evaluate(model, str(TINY), context=128, **kw)
    assert result.summary["model"]["context"] == 128 and result.summary["suite"]["lengths"] == {"1x": 128}


def test_import_metabench_stays_cheap():
    """metabench.evaluate is reachable from the package without importing torch or transformers."""
    code = "import sys, metabench; metabench.evaluate; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
