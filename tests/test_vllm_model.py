"""The reference meta-token model served by vLLM (metabench.model.vllm_model) vs transformers.

The bundled, trained reference checkpoint (reference_model/tiny: head size
32, so meta-attention runs at head size 64) and its YaRN-2x extension, each
loaded in one vLLM engine per module; a real OpenAI server answers `metabench run`; bad checkpoints fail at
engine start with errors that say what to change.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from metabench.model.modeling_meta import MetaForCausalLM  # noqa: E402
from metabench.reference_tokenizer import BUNDLED as REFERENCE_TOKENIZER  # noqa: E402

TOKENIZER = REFERENCE_TOKENIZER
ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "reference_model" / "tiny"  # the bundled, trained checkpoint (head size 32)
BUNDLED_YARN = ROOT / "reference_model" / "tiny-yarn2x"  # its YaRN-2x extension, as `metabench extend` wrote it
WINDOW = 256  # the bundled model's training window; the YaRN extension runs at 2x
META_RATE = 0.1  # the paper's k: one meta-token per ten tokens


def _tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(TOKENIZER / "tokenizer.json"))


def with_meta(ids: list[int], meta_id: int, rng: random.Random, rate: float = META_RATE) -> list[int]:
    """ids with the meta-token inserted after each token with probability `rate`."""
    out: list[int] = []
    for i in ids:
        out.append(i)
        if rng.random() < rate:
            out.append(meta_id)
    return out


def edited_copy(src: Path, out: Path, **changes: object) -> Path:
    """A copy of checkpoint src whose config.json has `changes` (None deletes a key), as a user might edit it."""
    shutil.copytree(src, out)
    cfg = json.loads((out / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


@pytest.fixture(scope="module")
def ckpt() -> Path:
    return BUNDLED


@pytest.fixture(scope="module")
def ckpt_yarn() -> Path:
    return BUNDLED_YARN


ENGINE_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}


def make_llm(model: Path, max_model_len: int):
    vllm = pytest.importorskip("vllm")  # here, not at import: collecting the quick tier should not load vLLM
    os.environ.update(ENGINE_ENV)
    return vllm.LLM(model=str(model), dtype="float32", max_model_len=max_model_len, gpu_memory_utilization=0.3,
                    seed=0, enable_prefix_caching=False)  # cached prefixes would return no prompt log-probs


def prompts(meta_id: int, n: int, min_len: int, max_len: int, seed: int) -> list[list[int]]:
    """n prompts of procedural text with meta-tokens (about 1 in 10), lengths spread over [min_len, max_len].

    Prompt 0 starts with a meta-token, prompt 1 ends with one, prompt 2 has none.
    """
    from metabench.haystack import procedural_sentences

    tok = _tokenizer()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = min_len + (max_len - min_len) * i // max(n - 1, 1)
        ids = with_meta(tok.encode(" ".join(procedural_sentences(rng, 120))).ids, meta_id, rng, 0.0 if i == 2 else 0.1)
        ids = ids[:length]
        if i == 0:
            ids = [meta_id] + ids[: length - 1]
        if i == 1:
            ids = ids[: length - 1] + [meta_id]
        assert len(ids) == length
        out.append(ids)
    return out


def hf_reference(model_dir: Path, prompt_ids: list[list[int]], new_tokens: int):
    """transformers' greedy continuation, the top-1 minus top-2 logit gap at each step, and prompt log-probs."""
    model = MetaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    refs = []
    with torch.inference_mode():
        for ids in prompt_ids:
            logits = model(torch.tensor([ids]), use_cache=False).logits[0]  # (T, V)
            logprobs = logits[:-1].log_softmax(-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
            seq, gaps = list(ids), []
            for _ in range(new_tokens):
                top = logits[-1].topk(2)
                gaps.append(float(top.values[0] - top.values[1]))
                seq.append(int(top.indices[0]))
                logits = model(torch.tensor([seq]), use_cache=False).logits[0]
            refs.append((seq[len(ids):], gaps, logprobs.tolist()))
    return refs


def check_parity(llm, model_dir: Path, prompt_ids: list[list[int]], new_tokens: int) -> int:
    """Assert vLLM's greedy tokens and prompt log-probs match transformers'; returns near-tie divergences."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True, prompt_logprobs=0)
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompt_ids], params, use_tqdm=False)
    refs = hf_reference(model_dir, prompt_ids, new_tokens)
    ties = 0
    worst = 0.0
    for ids, out, (ref_tokens, gaps, ref_logprobs) in zip(prompt_ids, outs, refs):
        got = list(out.outputs[0].token_ids)
        assert len(got) == new_tokens
        first = next((i for i, (a, b) in enumerate(zip(got, ref_tokens)) if a != b), None)
        if first is not None:
            # only a near-tie in transformers' own logits may send greedy another way
            assert gaps[first] < 1e-3, (len(ids), first, got, ref_tokens, gaps[first])
            ties += 1
        got_lp = [next(iter(d.values())).logprob for d in out.prompt_logprobs[1:]]
        assert [next(iter(d)) for d in out.prompt_logprobs[1:]] == ids[1:]
        worst = max(worst, max(abs(a - b) for a, b in zip(got_lp, ref_logprobs)))
    assert worst < 1e-3, worst
    return ties


@pytest.mark.slow
def test_parity_with_transformers(ckpt):
    """32 prompts with meta-tokens up to the window: the same greedy tokens and prompt log-probs."""
    meta_id = json.loads((ckpt / "config.json").read_text())["meta_token_id"]
    llm = make_llm(ckpt, WINDOW)
    try:
        assert check_parity(llm, ckpt, prompts(meta_id, 32, 8, WINDOW - 16, seed=1), 16) <= 2
    finally:
        del llm


@pytest.mark.slow
def test_yarn_parity_at_twice_the_window(ckpt_yarn):
    """The YaRN-2x checkpoint runs at 2x its original window in vLLM, matching transformers."""
    cfg = json.loads((ckpt_yarn / "config.json").read_text())
    assert cfg["rope_parameters"]["rope_type"] == "yarn" and cfg["max_position_embeddings"] == 2 * WINDOW
    llm = make_llm(ckpt_yarn, 2 * WINDOW)
    try:
        assert check_parity(llm, ckpt_yarn, prompts(cfg["meta_token_id"], 32, 16, 2 * WINDOW - 16, seed=2), 16) <= 2
    finally:
        del llm


@pytest.fixture(scope="module")
def meta_server(ckpt_yarn, tmp_path_factory):
    """A real vLLM OpenAI server (`python -m vllm.entrypoints.openai.api_server`) serving the YaRN-2x
    meta checkpoint at 2x its original window, with no flag but the usual ones; yields its /v1 URL."""
    from vllm_server import serve

    log = tmp_path_factory.mktemp("meta_server") / "server.log"
    with serve(ckpt_yarn, log, name="tiny-meta", max_model_len=2 * WINDOW) as url:
        yield url


def _metabench_run(out: Path, *args: str) -> dict[str, dict]:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "metabench", "run", "--quiet", "--suite", "smoke", "--marker", "<|meta|>",
           "--context", str(2 * WINDOW), "--out", str(out), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENGINE_ENV})
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {row["id"]: row for row in rows}


@pytest.mark.slow
def test_openai_server_answers_metabench_run(meta_server, ckpt_yarn, tmp_path):
    """`metabench run --model openai:URL` against the served meta checkpoint: the smoke suite (prompts with
    meta-tokens, up to 1x = 2x the original window) gives the transformers backend's predictions."""
    served = _metabench_run(tmp_path / "openai", "--model", f"openai:{meta_server}", "--tokenizer", str(ckpt_yarn))
    hf = _metabench_run(tmp_path / "hf", "--model", f"hf:{ckpt_yarn}", "--dtype", "float32")
    assert set(served) == set(hf) and len(served) == 6 * 2 * 4
    assert any("<|meta|>" in row["prompt_head"] for row in served.values())
    differ = [sid for sid in hf if hf[sid]["prediction"] != served[sid]["prediction"]]
    assert not differ, [(sid, hf[sid]["prediction"], served[sid]["prediction"]) for sid in differ]


BAD_INPUT_SCRIPT = """
import sys
from vllm import LLM
for path in sys.argv[1:]:
    try:
        LLM(model=path, dtype="float32", max_model_len=128, gpu_memory_utilization=0.3)
        print("LOADED", path)
    except Exception as err:
        print("ERROR", path, type(err).__name__, err)
"""


@pytest.mark.slow
def test_bad_checkpoints_fail_with_what_to_change(ckpt, tmp_path):
    """No meta_token_id, or a head size vLLM's CPU kernels do not take: a loud error naming the fix."""
    import subprocess
    import sys

    no_meta = edited_copy(ckpt, tmp_path / "no_meta", meta_token_id=None)
    head16 = edited_copy(ckpt, tmp_path / "head16", num_attention_heads=8)  # 128 / 8 = 16; same weight shapes
    env = {**os.environ, **ENGINE_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # the error reaches the caller
    r = subprocess.run([sys.executable, "-c", BAD_INPUT_SCRIPT, str(no_meta), str(head16)],
                       capture_output=True, text=True, env=env, timeout=300)
    lines = {line.split()[1]: line for line in r.stdout.splitlines() if line.startswith(("ERROR", "LOADED"))}
    assert set(lines) == {str(no_meta), str(head16)}, r.stdout + r.stderr[-3000:]
    assert "meta_token_id is not set: set meta_token_id" in lines[str(no_meta)], lines[str(no_meta)]
    msg = lines[str(head16)]
    assert "do not take head size 16" in msg and "retrain it with num_attention_heads 4 (head size 32) or 2 (head size 64)" in msg, msg
