"""What meta-attention costs: training-step and generation time, meta-attention on vs off.

The paper materialises a dense T x T meta mask and projects every position; it
reports a 1.11x slowdown (130.82 vs 117.86 tokens/s). Our meta-attention
gathers the meta-tokens (k = 0.1 of a 1024-token block), projects and attends
over those only. Target: ratio <= 1.05.

    python benchmarks/meta_attention_overhead.py                       # CPU, the "small" preset's model
    python benchmarks/meta_attention_overhead.py --device cuda --size paper-gpt2

Both models share every weight but meta-attention's and see the same inputs.
Measurements alternate on/off and report medians, so drift hits both alike. On
CPU the process's CPU time is reported too: on a shared machine it is the
steadier measure (single-threaded, --threads 1, it is the work done).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from metabench.model.configuration_meta import MetaConfig
from metabench.model.model import PAPER_GPT2, GPTConfig
from metabench.model.modeling_meta import MetaForCausalLM
from metabench.train.presets import PRESETS


def model_config(size: str) -> GPTConfig:
    return PAPER_GPT2 if size == "paper-gpt2" else PRESETS[size].model


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", choices=[*PRESETS, "paper-gpt2"], default="small",
                   help="a training preset's model, or paper-gpt2: the paper's 12 x 768 with GPT-2's vocabulary")
    p.add_argument("--block", type=int, default=1024, help="tokens per sequence")
    p.add_argument("--density", type=float, default=0.1, help="meta-tokens per token (the paper's k)")
    p.add_argument("--batch", type=int, default=None, help="sequences per training step (default: 1 on CPU, 8 on GPU)")
    p.add_argument("--steps", type=int, default=6, help="timed training steps per model")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens generated after a block - new-tokens prompt")
    p.add_argument("--repeats", type=int, default=3, help="timed generate() calls per model")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the models (removes launch overhead on GPUs)")
    return p.parse_args()


def batch_with_meta(args: argparse.Namespace, batch: int, vocab: int, meta_id: int) -> torch.Tensor:
    """(batch, block) random ids with round(density * block) meta-tokens at uniformly random positions."""
    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, meta_id, (batch, args.block), generator=gen)
    n_meta = round(args.density * args.block)
    for row in ids:
        row[torch.randperm(args.block, generator=gen)[:n_meta]] = meta_id
    return ids.to(args.device)


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds on the clock: what a user waits
    cpu: float  # seconds of this process's CPU time: robust on a shared CPU, meaningless for GPU work


def timed(fn: Callable[[], object], device: str) -> Timing:
    """Time fn(), waiting for queued GPU work before and after."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return Timing(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu)


def report(title: str, runs: dict[str, list[Timing]], tokens: int, on_gpu: bool) -> None:
    """Median times of meta-attention on and off, tokens/s, and the on/off ratios."""
    print(f"{title}, median of {len(runs['on'])}:")
    clocks = ("wall",) if on_gpu else ("wall", "cpu")
    median = {(name, c): statistics.median(getattr(t, c) for t in runs[name]) for name in runs for c in clocks}
    for name in ("on", "off"):
        wall = median[name, "wall"]
        cpu = "" if on_gpu else f", CPU time {median[name, 'cpu']:.4f} s"
        print(f"  meta-attention {name:3}: {wall:.4f} s ({tokens / wall:,.1f} tokens/s){cpu}")
    ratios = ", ".join(f"{c} {median['on', c] / median['off', c]:.3f}" for c in clocks)
    print(f"  ratio on/off: {ratios}  (target <= 1.05; the paper's dense mask: 1.11)")


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    on_gpu = args.device.startswith("cuda")
    batch = args.batch or (8 if on_gpu else 1)
    base = replace(model_config(args.size), block_size=args.block)

    def precision() -> contextlib.AbstractContextManager:
        # bf16 autocast on GPU, as one would train there; float32 on CPU
        return torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else contextlib.nullcontext()

    models: dict[str, MetaForCausalLM] = {}
    for name, meta_attention in (("on", True), ("off", False)):
        torch.manual_seed(args.seed)
        config = MetaConfig.from_gpt_config(replace(base, meta_attention=meta_attention))
        models[name] = MetaForCausalLM(config).to(args.device)
    shared = {k: v for k, v in models["on"].state_dict().items() if ".meta_attn." not in k}
    models["off"].load_state_dict(shared)  # identical but for meta-attention
    # fused AdamW on GPUs: one kernel for all parameters, so meta-attention's extra
    # parameters do not add launch overhead to the update
    fused = {"fused": True} if on_gpu else {}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4, **fused) for name, m in models.items()}
    if args.compile:
        for m in models.values():
            m.model.compile()
    ids = batch_with_meta(args, batch, base.vocab_size, base.meta_token_id)

    def train_step(name: str) -> None:
        model, opt = models[name], optimizers[name]
        model.train()
        with precision():
            loss = model(ids, labels=ids, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    prompt = ids[:1, : args.block - args.new_tokens]

    def generate(name: str) -> None:
        model = models[name].eval()
        with torch.no_grad(), precision():
            out = model.generate(
                prompt, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0
            )
        assert out.shape[1] == args.block

    times: dict[str, dict[str, list[Timing]]] = {"train": {"on": [], "off": []}, "generate": {"on": [], "off": []}}
    for name in ("on", "off"):  # warm-up: allocator, kernels, caches
        train_step(name)
        generate(name)
    for _ in range(args.steps):
        for name in ("on", "off"):  # alternate, so drift and neighbours hit both alike
            times["train"][name].append(timed(lambda: train_step(name), args.device))  # noqa: B023
    for _ in range(args.repeats):
        for name in ("on", "off"):
            times["generate"][name].append(timed(lambda: generate(name), args.device))  # noqa: B023

    n_params = {name: sum(p.numel() for p in m.parameters()) / 1e6 for name, m in models.items()}
    print(
        f"device {args.device} ({torch.get_num_threads()} threads), size {args.size} "
        f"({base.n_layer} x {base.n_embd}, vocab {base.vocab_size}; {n_params['on']:.1f}M params on, "
        f"{n_params['off']:.1f}M off), block {args.block}, k = {args.density} "
        f"({round(args.density * args.block)} meta-tokens per row)"
    )
    report(f"training step (AdamW), batch {batch} x {args.block}", times["train"], batch * args.block, on_gpu)
    prompt_len = args.block - args.new_tokens
    report(
        f"generate(), {prompt_len}-token prompt + {args.new_tokens} new tokens, KV cache; tokens/s counts new ones",
        times["generate"],
        args.new_tokens,
        on_gpu,
    )


if __name__ == "__main__":
    main()
