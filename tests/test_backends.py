"""hf, vllm and openai (a real vLLM server) give the same greedy predictions on the same samples.

Where two backends differ, the test shows greedy was a near-tie there: the top
two logits (from transformers) at the first differing token are within 1e-3.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = """
name: parity
seed: 11
lengths: [0.5x, 1x]
samples: 3
tasks:
  - {task: needle, variant: single}
  - {task: parity}
  - {task: copy, variant: short}
  - {task: list_recall, variant: easy}
"""


def _run(tmp: Path, *args: str) -> dict[str, dict]:
    suite = tmp / "suite.yaml"
    suite.write_text(SUITE)
    out = tmp / "out"
    r = subprocess.run([sys.executable, "-m", "metabench", "run", "--quiet", "--suite", str(suite), "--out", str(out), *args],
                       capture_output=True, text=True, env={**__import__("os").environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return {row["id"]: row for row in rows}


@pytest.fixture(scope="module")
def hf_rows(tiny_llama_dir, tmp_path_factory):
    return _run(tmp_path_factory.mktemp("hf"), "--model", f"hf:{tiny_llama_dir}", "--dtype", "float32")


def _near_tie(model_dir: Path, sample_id: str, a: str, b: str) -> float:
    """Top-1 minus top-2 logit at the first token where predictions a and b part ways."""
    import torch
    from transformers import AutoModelForCausalLM

    from metabench.generate import Options, iter_samples
    from metabench.suite import parse_suite
    from metabench.tokenizer import load_tokenizer

    import yaml

    tok = load_tokenizer(model_dir)
    sample = next(s for s in iter_samples(parse_suite(yaml.safe_load(SUITE)), tok, Options(context=1024)) if s.id == sample_id)
    ta, tb = tok.encode(a), tok.encode(b)
    k = next(i for i in range(min(len(ta), len(tb)) + 1) if i == min(len(ta), len(tb)) or ta[i] != tb[i])
    ids = tok.encode(sample.prompt, specials=sample.add_special_tokens) + ta[:k]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        top = model(torch.tensor([ids])).logits[0, -1].topk(2).values
    return float(top[0] - top[1])


def _compare(model_dir: Path, ref: dict[str, dict], other: dict[str, dict]) -> int:
    assert set(ref) == set(other) and len(ref) == 4 * 2 * 3
    differ = 0
    for sid, row in ref.items():
        assert row["prompt_sha256"] == other[sid]["prompt_sha256"]
        if row["prediction"] != other[sid]["prediction"]:
            differ += 1
            gap = _near_tie(model_dir, sid, row["prediction"], other[sid]["prediction"])
            assert gap < 1e-3, (sid, row["prediction"], other[sid]["prediction"], gap)
        assert row["scores"] == other[sid]["scores"] or row["prediction"] != other[sid]["prediction"]
    return differ


@pytest.mark.slow
def test_vllm_engine_matches_hf(hf_rows, tiny_llama_dir, tmp_path):
    pytest.importorskip("vllm")
    rows = _run(tmp_path, "--model", f"vllm:{tiny_llama_dir}", "--dtype", "float32", "--gpu-memory-utilization", "0.3")
    assert _compare(tiny_llama_dir, hf_rows, rows) <= 2
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["provenance"]["backend"]["backend"] == "vllm"


@pytest.mark.slow
def test_openai_server_matches_hf(hf_rows, tiny_llama_dir, vllm_server, tmp_path):
    rows = _run(tmp_path, "--model", f"openai:{vllm_server}", "--tokenizer", str(tiny_llama_dir))
    assert _compare(tiny_llama_dir, hf_rows, rows) <= 2
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["model"]["name"] == "tiny" and summary["model"]["context"] == 1024


def test_model_specs():
    from metabench.backends import parse_model
    from metabench.errors import MetabenchError

    assert parse_model("vllm:/m") == ("vllm", "/m") and parse_model("openai:http://h:1/v1") == ("openai", "http://h:1/v1")
    assert parse_model("openai-chat:http://h:1/v1") == ("openai-chat", "http://h:1/v1")
    for bad in ("gguf:/m", "hf:", "/m", "chat:http://h:1/v1"):
        with pytest.raises(MetabenchError, match="write hf:PATH, vllm:PATH, openai:URL or openai-chat:URL"):
            parse_model(bad)


# ----------------------------------------------------------------------------- a Llama-3-style rope config

LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 4.0, "original_max_position_embeddings": 256,
               "low_freq_factor": 1.0, "high_freq_factor": 4.0}
LLAMA3_SUITE = "name: llama3\nseed: 5\nsamples: 3\nlengths: [1x]\ntasks: [{task: needle, variant: single}, {task: copy, variant: short}]\n"


@pytest.fixture(scope="module")
def llama3_dir(tmp_path_factory, bytelevel_dir):
    """A tiny trained Llama with rope_theta 500000 and llama3 scaling (256 -> 1024), as Llama-3.1 ships."""
    from tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("llama3"), bytelevel_dir, steps=100, seed=1,
                            rope_parameters=dict(LLAMA3_ROPE))


def _llama3_rows(tmp: Path, model: str, lengths: str, *extra: str) -> tuple[dict[str, str], dict]:
    tmp.mkdir(parents=True, exist_ok=True)
    suite = tmp / "suite.yaml"
    suite.write_text(LLAMA3_SUITE)
    out = tmp / model.split(":")[0]
    r = subprocess.run([sys.executable, "-m", "metabench", "run", "--quiet", "--suite", str(suite), "--lengths", lengths,
                        "--model", model, "--dtype", "float32", "--out", str(out), *extra], capture_output=True, text=True,
                       env={**__import__("os").environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {json.loads(x)["id"]: json.loads(x)["prediction"] for x in (out / "results.jsonl").read_text().splitlines()}
    return rows, json.loads((out / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("rope, lengths, window", [(None, "0.5x,1x", 1024), ("llama3:factor=8", "2x", 2048)])
def test_llama3_rope_parity_hf_vllm(llama3_dir, tmp_path, rope, lengths, window):
    """rope_theta 500000 and llama3 scaling reach vLLM as transformers reads them, with and without --rope:
    the same greedy tokens (a reset rope_theta or a replaced scaling changes them past the 256-token original)."""
    pytest.importorskip("vllm")
    extra = ("--rope", rope) if rope else ()
    hf, summary = _llama3_rows(tmp_path / "hf", f"hf:{llama3_dir}", lengths, *extra)
    vl, _ = _llama3_rows(tmp_path / "vllm", f"vllm:{llama3_dir}", lengths, *extra, "--gpu-memory-utilization", "0.3")
    assert summary["model"]["window"] == window and summary["model"]["context"] == 1024
    assert set(hf) == set(vl) and len(hf) == 2 * 3 * len(lengths.split(","))
    assert sum(hf[k] != vl[k] for k in hf) <= 1, [(k, hf[k], vl[k]) for k in hf if hf[k] != vl[k]]
    assert sum(bool(p.strip()) for p in hf.values()) >= len(hf) // 2  # the model says something to compare


def test_a_served_model_refuses_rope_before_any_request():
    """A server's rope scaling is fixed where it starts: --rope would be recorded in the identity but not applied."""
    from metabench.backends import BackendOptions
    from metabench.backends.openai import Server
    from metabench.errors import MetabenchError

    with pytest.raises(MetabenchError, match="--rope applies to hf and vllm"):
        Server("http://127.0.0.1:9/v1", BackendOptions(rope_parameters={"rope_type": "yarn", "factor": 2.0}))
