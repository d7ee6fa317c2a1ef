"""Generated tokens/s of the reference meta-token model: vLLM (our plugin) vs transformers, same suite.

In one process: `metabench run`'s runner on one suite (prompts with
meta-tokens, via --marker) through the `hf:` backend and the `vllm:` backend
on the same checkpoint, float32. Each backend is loaded once, runs the suite
--repeats times (medians reported) and is closed before the next loads: an
idle vLLM engine still polls, and would slow transformers down. Speed =
generated tokens / the runner's own generate time (summary provenance
`generate_seconds_this_session`), so model loading and engine start are left
out (printed separately). Predictions are compared too: greedy on the same
model should agree.

With --meta-cost it also serves a copy of the checkpoint with meta_attention
off (same weights otherwise; its outputs differ) through vLLM, which measures
what meta-attention as a second padded paged attention costs in vLLM.

    python3 benchmarks/vllm_vs_hf.py [--model DIR] [--suite smoke] [--context 1024] [--meta-cost]

Without --model it builds a random-initialised meta model (4 layers, 4 heads of
64, width 256) with the bundled tokenizer in a temporary folder.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from metabench.backends import BackendOptions, make_backend
from metabench.reference_tokenizer import BUNDLED
from metabench.generate import Options
from metabench.runner import RunConfig, run
from metabench.suite import load_suite


def small_meta(folder: Path, context: int) -> Path:
    """A random MetaForCausalLM (head_dim 64, vLLM's CPU kernels take it) with the bundled tokenizer."""
    import torch

    from metabench.model.configuration_meta import MetaConfig
    from metabench.model.model import GPTConfig
    from metabench.model.modeling_meta import MetaForCausalLM
    from metabench.tokenizer import load_tokenizer

    tok = load_tokenizer(BUNDLED)
    vocab = tok.backend.get_vocab_size()
    torch.manual_seed(0)
    gpt = GPTConfig(vocab_size=vocab, block_size=context, n_layer=4, n_head=4, n_embd=256,
                    meta_token_id=tok.backend.token_to_id("<|meta|>"))
    model = MetaForCausalLM(MetaConfig.from_gpt_config(gpt, eos_token_id=tok.backend.token_to_id("<|endoftext|>")))
    model.save_pretrained(folder)
    for f in Path(BUNDLED).iterdir():
        shutil.copy(f, folder / f.name)
    return folder


def without_meta_attention(src: Path, out: Path) -> Path:
    """src with meta_attention off and its meta-attention weights dropped."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["meta_attention"] = False
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    weights = load_file(out / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".meta_attn." not in k}, out / "model.safetensors",
              metadata={"format": "pt"})
    return out


def timed_runs(spec: str, options: BackendOptions, suite: Any, folder: Path, context: int,
               repeats: int) -> dict[str, Any]:
    """Load `spec` once, run the suite `repeats` times, close it; returns generated tokens, load and
    generate seconds (each run and the median) and the predictions."""
    t0 = time.perf_counter()
    backend = make_backend(spec, options, spec.partition(":")[2], max_len=context)
    out: dict[str, Any] = {"load_s": time.perf_counter() - t0, "gen_s": []}
    try:
        for k in range(repeats):
            summary = run(RunConfig(model=spec, suite=suite, out=folder / str(k), context=context,
                                    options=Options(marker="<|meta|>"), backend=options, progress=False),
                          backend=backend)
            rows = [json.loads(line) for line in (folder / str(k) / "results.jsonl").read_text().splitlines()]
            out["gen_s"].append(summary["provenance"]["generate_seconds_this_session"])
            out["tokens"] = sum(r["output_tokens"] for r in rows)
            out["predictions"] = {r["id"]: r["prediction"] for r in rows}
    finally:
        backend.close()
        gc.collect()  # the vLLM engine's processes go with it
    out["median_s"] = statistics.median(out["gen_s"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="MetaForCausalLM folder with its tokenizer (default: a random small one)")
    p.add_argument("--suite", default="smoke")
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=8, help="hf: requests per generate call")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per backend (medians are reported)")
    p.add_argument("--meta-cost", action="store_true", help="also time vLLM with meta-attention off")
    args = p.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    tmp = Path(tempfile.mkdtemp())
    model = Path(args.model) if args.model else small_meta(tmp / "model", args.context)
    suite = load_suite(args.suite)

    specs = {"transformers": f"hf:{model}", "vllm": f"vllm:{model}"}
    if args.meta_cost:
        specs["vllm, meta-attention off"] = f"vllm:{without_meta_attention(model, tmp / 'no_meta_attn')}"
    results = {}
    for name, spec in specs.items():
        vllm_kw: dict[str, Any] = {}
        if spec.startswith("vllm:"):
            # repeats send the same prompts: without this, runs after the first would skip prefill
            vllm_kw = {"gpu_memory_utilization": 0.3, "extra": {"enable_prefix_caching": False}}
        options = BackendOptions(dtype="float32", batch_size=args.batch_size, **vllm_kw)
        results[name] = timed_runs(spec, options, suite, tmp / f"run{len(results)}", args.context, args.repeats)

    n = len(results["vllm"]["predictions"])
    print(f"suite {suite.name}: {n} samples with <|meta|> markers, lengths {', '.join(suite.lengths)} "
          f"of {args.context} tokens, float32, model {model}; median of {args.repeats} runs each")
    for name, r in results.items():
        runs = ", ".join(f"{x:.2f}" for x in r["gen_s"])
        print(f"{name:>26}: {r['tokens'] / r['median_s']:8.1f} generated tokens/s  ({r['tokens']} tokens; "
              f"generate s {runs}; load {r['load_s']:.1f} s)")
    hf, vl = results["transformers"], results["vllm"]
    print(f"vllm / transformers: {hf['median_s'] / vl['median_s']:.2f}x generated tokens/s")
    same = sum(hf["predictions"][k] == vl["predictions"][k] for k in hf["predictions"])
    print(f"identical predictions: {same}/{n}")
    if args.meta_cost:
        off = results["vllm, meta-attention off"]
        print(f"vllm meta-attention cost: {vl['median_s'] / off['median_s']:.2f}x generate time, on vs off "
              "(the paper's dense mask: 1.11x)")


if __name__ == "__main__":
    main()
