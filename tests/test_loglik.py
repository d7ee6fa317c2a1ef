"""--scoring loglik on real models: checked against an unbatched transformers forward pass, against greedy
generation, hf against vLLM, and the one-line refusals."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from metabench.loglik import continuation

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "reference_model" / "tiny"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metabench", "run", "--quiet", *args], capture_output=True, text=True)


def _rows(folder: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (folder / "results.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> tuple[Path, Path]:
    """The bundled tiny model on the smoke suite at 1x, scored both ways (loglik in batches of 5, so left padding
    and rows of different answer lengths share a forward pass)."""
    tmp = tmp_path_factory.mktemp("loglik")
    for scoring in ("loglik", "generate"):
        r = _run("--model", f"hf:{TINY}", "--suite", "smoke", "--lengths", "1x", "--scoring", scoring,
                 "--batch-size", "5", "--out", str(tmp / scoring))
        assert r.returncode == 0, r.stderr
    return tmp / "loglik", tmp / "generate"


@pytest.mark.slow
def test_loglik_equals_an_unbatched_forward_pass(tiny_runs):
    """Each row's answer log-probability and argmax, recomputed here one sample at a time with plain transformers."""
    import torch
    from transformers import AutoModelForCausalLM

    from metabench.model import register
    from metabench.tokenizer import load_tokenizer

    register()
    lm = AutoModelForCausalLM.from_pretrained(str(TINY)).eval()
    tok = load_tokenizer(TINY)
    rows = _rows(tiny_runs[0])
    samples = [json.loads(x) for x in _generated(tiny_runs[0]).read_text().splitlines()]
    assert {s["id"] for s in samples} == set(rows)
    for s in samples:
        prompt = tok.encode(s["prompt"], specials=s["add_special_tokens"])
        answer = tok.encode(continuation(s["prompt"], s["target"]))
        with torch.no_grad():
            logp = torch.log_softmax(lm(torch.tensor([prompt + answer])).logits[0].float(), -1)
        at = logp[len(prompt) - 1 : len(prompt) + len(answer) - 1]
        mean = sum(at[k, t].item() for k, t in enumerate(answer)) / len(answer)
        row = rows[s["id"]]
        assert row["answer_logprob"] == pytest.approx(mean, abs=2e-4), s["id"]
        assert row["scores"]["answer_prob"] == pytest.approx(math.exp(mean), rel=1e-3)
        assert row["scores"]["greedy_match"] == float(at.argmax(-1).tolist() == answer), s["id"]
        assert row["primary"] == "greedy_match" and row["finish_reason"] is None


def _generated(folder: Path) -> Path:
    """The same samples as the run scored, written by `metabench generate` from the run's own settings."""
    out = folder.parent / "samples.jsonl"
    if not out.exists():
        r = subprocess.run([sys.executable, "-m", "metabench", "generate", "--suite", "smoke", "--lengths", "1x",
                            "--context-from", str(TINY), "--out", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return out


@pytest.mark.slow
def test_greedy_match_is_greedy_generation_starting_with_the_answer(tiny_runs):
    """greedy_match is 1 exactly when greedy decoding writes the gold answer first: the two scorings agree sample by
    sample (both outcomes occur on the bundled model), and the loglik summary says how it was scored."""
    ll, gen = (_rows(f) for f in tiny_runs)
    assert set(ll) == set(gen)
    outcomes = set()
    for i, row in ll.items():
        prompt_end = gen[i]["prompt_tail"] or gen[i]["prompt_head"]  # the prompt's last characters (all of a short one)
        wrote = gen[i]["raw_output"].startswith(continuation(prompt_end, row["target"]))
        assert row["scores"]["greedy_match"] == float(wrote), i
        outcomes.add(wrote)
    assert outcomes == {True, False}
    summary = json.loads((tiny_runs[0] / "summary.json").read_text())
    assert summary["scoring"] == "loglik" and {c["primary"] for c in summary["cells"]} == {"greedy_match"}
    assert json.loads((tiny_runs[1] / "summary.json").read_text())["scoring"] == "generate"


@pytest.mark.slow
def test_a_folder_holds_one_scoring(tiny_runs, tmp_path):
    """Resuming a loglik folder with generate scoring is refused, rows kept."""
    before = (tiny_runs[0] / "results.jsonl").read_text()
    r = _run("--model", f"hf:{TINY}", "--suite", "smoke", "--lengths", "1x", "--out", str(tiny_runs[0]))
    assert r.returncode == 2 and "scoring" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (tiny_runs[0] / "results.jsonl").read_text() == before


@pytest.mark.slow
def test_vllm_loglik_matches_hf(tiny_llama_dir, tmp_path):
    """vLLM's prompt log-probabilities give the same greedy_match and (float32) log-probabilities as transformers."""
    pytest.importorskip("vllm")
    common = ("--suite", "smoke", "--lengths", "0.25x", "--scoring", "loglik", "--dtype", "float32")
    r = _run("--model", f"hf:{tiny_llama_dir}", *common, "--out", str(tmp_path / "hf"))
    assert r.returncode == 0, r.stderr
    r = _run("--model", f"vllm:{tiny_llama_dir}", *common, "--gpu-memory-utilization", "0.3", "--out",
             str(tmp_path / "vllm"))
    assert r.returncode == 0, r.stderr
    hf, vl = _rows(tmp_path / "hf"), _rows(tmp_path / "vllm")
    assert set(hf) == set(vl)
    for i in hf:
        assert vl[i]["scores"]["greedy_match"] == hf[i]["scores"]["greedy_match"], i
        assert vl[i]["answer_logprob"] == pytest.approx(hf[i]["answer_logprob"], abs=1e-3), i


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (("--model", "openai:http://127.0.0.1:9/v1", "--tokenizer", str(TINY)), "needs the model's log-probabilities"),
    (("--model", f"hf:{TINY}", "--max-tokens", "8"), "--max-tokens is a generation cap"),
    (("--model", f"hf:{TINY}", "--tasks", "needle:multivalue"), "asks for 4 answers in any order"),
])
def test_loglik_refusals(args, message, tmp_path):
    """One line, exit 2, before any model loads or any folder is made."""
    out = tmp_path / "out"
    r = _run(*args, "--lengths", "1x", "--scoring", "loglik", "--out", str(out))
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()
