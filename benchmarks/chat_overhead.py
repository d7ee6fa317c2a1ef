"""The chat backend's overhead: `openai-chat:` vs `openai:` (completions) on the same local vLLM server.

One vLLM OpenAI server (started by tests/vllm_server.py as `python -m
vllm.entrypoints.openai.api_server`, prefix caching off so repeats pay
their prefill) serves one model with a chat template. The same suite runs
through both backends, alternating,
--repeats times each; each run's time is the runner's own generate time
(summary provenance `generate_seconds_this_session`). Both send prompts of
the same token lengths (the chat template counts inside the length), so the
ratio of medians is what chat costs: the server rendering the template and
re-tokenizing text, against token ids sent as they are. Generated tokens are
printed too; a random-initialised model rarely stops early, so both sides
generate about the same number.

    python3 benchmarks/chat_overhead.py [--model DIR] [--suite smoke] [--repeats 3]

Without --model it builds a random 2-layer Llama (head_dim 64) with the
bundled tokenizer and a small chat template in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from metabench.backends import BackendOptions
from metabench.reference_tokenizer import BUNDLED
from metabench.runner import RunConfig, run
from metabench.suite import load_suite

# The tests' vLLM server starter (tests/vllm_server.py) is the one way a server is started here.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from vllm_server import serve  # noqa: E402

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def small_chat_llama(folder: Path, context: int) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from metabench.tokenizer import load_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    for f in BUNDLED.iterdir():
        shutil.copy(f, folder / f.name)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["chat_template"] = TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    tok = load_tokenizer(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tok.backend.get_vocab_size(), hidden_size=256, intermediate_size=512,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, head_dim=64,
                         max_position_embeddings=context, bos_token_id=None, eos_token_id=0, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder with a chat template (default: a random small Llama)")
    p.add_argument("--suite", default="smoke")
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=8, help="concurrent requests")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    model = Path(args.model) if args.model else small_chat_llama(tmp / "model", args.context)
    suite = load_suite(args.suite)
    times: dict[str, list[float]] = {"openai": [], "openai-chat": []}
    tokens: dict[str, int] = {}
    kv_space = {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    with serve(model, tmp / "server.log", "--no-enable-prefix-caching", name="bench", max_model_len=args.context,
               env=kv_space) as url:
        for k in range(args.repeats):
            for kind in times:
                out = tmp / f"{kind}{k}"
                summary = run(RunConfig(model=f"{kind}:{url}", suite=suite, out=out, tokenizer=str(model),
                                        backend=BackendOptions(batch_size=args.batch_size), progress=False))
                times[kind].append(summary["provenance"]["generate_seconds_this_session"])
                rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
                tokens[kind] = sum(r["output_tokens"] for r in rows)
    n = len(rows)
    print(f"suite {suite.name}: {n} samples, lengths {', '.join(suite.lengths)} of {args.context} tokens, "
          f"{args.batch_size} concurrent requests, model {model}; median of {args.repeats} runs each")
    for kind, ts in times.items():
        print(f"{kind:>12}: median {statistics.median(ts):.2f} s  (runs {', '.join(f'{t:.2f}' for t in ts)}; "
              f"{tokens[kind]} generated tokens)")
    ratio = statistics.median(times["openai-chat"]) / statistics.median(times["openai"])
    print(f"chat / completions: {ratio:.2f}x generate time on the same server")


if __name__ == "__main__":
    main()
