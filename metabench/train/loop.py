"""The training loop: AdamW, warmup + cosine, clipping, resumable states, DDP, JSONL logs.

    train(cfg, out)            one process, or one rank under torchrun (DDP)

Data-parallel: under torchrun (WORLD_SIZE > 1) each rank takes rows r, r + W,
... of every global batch (see data.py) and DDP averages gradients. Each rank's
loss is its share of the *global* weighted sum, divided by the global weight
(all-reduced before the forward pass) and multiplied by W, so DDP's average
over ranks is exactly the gradient of one process on the whole batch, and the
logged loss matches one process to float rounding. gloo on CPU, nccl on GPUs.

Resume: every ckpt_every steps rank 0 writes OUT/train_state.pt atomically
(model, optimizer, scheduler, RNG states, step, config); the data position is
the step, since rows are pure functions of it. Rerunning the same command
continues from there; a state from a different config is an error. At the end
OUT holds a transformers checkpoint (MetaForCausalLM.save_pretrained,
safetensors, auto_map) with the reference tokenizer beside it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from metabench.model.configuration_meta import MetaConfig
from metabench.model.modeling_meta import MetaForCausalLM
from metabench.reference_tokenizer import BUNDLED, META_TOKEN
from metabench.tokenizer import load_tokenizer
from metabench.train.data import Batch, Stream
from metabench.train.presets import TrainConfig

STATE_NAME = "train_state.pt"
LOG_NAME = "train_log.jsonl"
CONFIG_NAME = "train_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_dist(device: str = "auto") -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if "RANK" not in os.environ:  # not under torchrun: one process, no process group
        if world != 1:
            raise ValueError(f"WORLD_SIZE is {world} but RANK is unset: start data-parallel runs with torchrun")
        return Dist(device=torch.device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, device=dev)


def lr_lambda(cfg: TrainConfig):
    """Multiplier of cfg.lr at a step: linear warmup, then cosine from lr down to min_lr."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.total_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        floor = cfg.min_lr / cfg.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, fused: bool) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices (>= 2 dims) only, as nanoGPT."""
    params = [p for p in model.parameters() if p.requires_grad]  # the tied embedding appears once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None)


def new_model(cfg: TrainConfig, eos_id: int) -> MetaForCausalLM:
    torch.manual_seed(cfg.seed)
    config = MetaConfig.from_gpt_config(cfg.model, eos_token_id=eos_id, pad_token_id=eos_id, bos_token_id=eos_id)
    return MetaForCausalLM(config)


class StepData(torch.utils.data.Dataset):
    """Step -> (phase, this process's batches of the global step, padded width of the first).

    The batches are the phase's rows, then (pre-training and fine-tuning, when
    cfg.induction_mix > 0) the induction rows mixed in, as their own shorter batch.
    """

    def __init__(self, stream: Stream, cfg: TrainConfig, rank: int, world: int) -> None:
        self.stream, self.cfg, self.mine = stream, cfg, list(range(rank, cfg.batch_size, world))
        self.mine_mix = list(range(rank, cfg.induction_mix, world))

    def __len__(self) -> int:
        return self.cfg.total_steps

    def __getitem__(self, step: int) -> tuple[str, list[Batch], int]:
        cfg = self.cfg
        if step < cfg.induction_steps:
            phase, pstep = "induction", step
        elif step < cfg.induction_steps + cfg.pretrain_steps:
            phase, pstep = "pretrain", step - cfg.induction_steps
        else:
            phase, pstep = "finetune", step - cfg.induction_steps - cfg.pretrain_steps
        batch, width = self.stream.rows(phase, pstep, self.mine, cfg.finetune_steps)
        batches = [batch]
        if phase != "induction" and self.mine_mix:
            batches.append(self.stream.mix_rows(phase, pstep, self.mine_mix))
        return phase, batches, width


def batch_loss(model: torch.nn.Module, batch: Batch, denom: torch.Tensor, scale: float) -> torch.Tensor:
    """sum over rows of weight * cross-entropy of next tokens, / denom * scale.

    The targets are shifted rather than the logits: slicing off the last position
    would copy the (B, T, vocab) logits and zero-fill their gradient, 4-5% of a
    tiny CPU step (benchmarks/train_step.py). The last position gets a dummy
    target with weight 0.
    """
    logits = model(input_ids=batch.ids, use_cache=False).logits  # (B, T, V)
    targets = torch.roll(batch.ids, -1, dims=1)  # the last column wraps around; its weight is 0
    weights = F.pad(batch.weights[:, 1:], (0, 1))
    ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    return (ce * weights.flatten()).sum() / denom * scale


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(out: Path, step: int, model, optimizer, scheduler, cfg_dict: dict) -> None:
    state = {
        "step": step,
        "config": cfg_dict,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
    }
    tmp = out / (STATE_NAME + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / STATE_NAME)  # a kill mid-write leaves the previous state whole


def load_state(out: Path, cfg_dict: dict) -> dict[str, Any] | None:
    path = out / STATE_NAME
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file (writes are atomic, so not one of ours cut short)
        raise ValueError(
            f"{path} is not a readable training state ({type(exc).__name__}: {exc}); "
            "delete it to start this training over"
        ) from exc
    if state["config"] != cfg_dict:
        changed = sorted(k for k in cfg_dict if state["config"].get(k) != cfg_dict[k])
        raise ValueError(
            f"{path} is a training state of a different configuration (differs in {changed}): "
            "rerun with the same preset and flags to resume, or use a new --out"
        )
    return state


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines after `step` (a killed run logged steps the resumed run will redo)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep))


def export(model: MetaForCausalLM, out: Path, tokenizer_dir: Path, cfg_dict: dict) -> None:
    """A transformers checkpoint folder: weights, config, remote code, tokenizer, training config."""
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy2(tokenizer_dir / name, out / name)
    (out / CONFIG_NAME).write_text(json.dumps(cfg_dict, indent=2) + "\n")


def train(
    cfg: TrainConfig,
    out: str | os.PathLike,
    device: str = "auto",
    init_from: str | os.PathLike | None = None,
    tokenizer_dir: str | os.PathLike | None = None,
    quiet: bool = False,
    workers: int = 0,
) -> Path:
    """Train (or resume) into `out`; returns `out`, holding the final checkpoint.

    init_from: start from this checkpoint's weights (and skip pre-training's
    random init), e.g. a YaRN-extended model fine-tuned at its new window; its
    config is used as is, and cfg.model must match it. workers: processes that
    build the next steps' batches ahead (a GPU outruns one CPU core of sample
    generation); batches are the same with any number of them.
    """
    out = Path(out)
    env = setup_dist(device)
    tok_dir = Path(tokenizer_dir) if tokenizer_dir else BUNDLED
    tok = load_tokenizer(str(tok_dir))
    stream = Stream.for_config(tok, cfg)
    if stream.meta_id != cfg.model.meta_token_id:
        raise ValueError(
            f"the tokenizer's {META_TOKEN} id is {stream.meta_id} but the model's meta_token_id is "
            f"{cfg.model.meta_token_id}: use the tokenizer the preset was made for"
        )
    if cfg.finetune_steps:
        stream.feasible  # fail before training when a task cannot fit the curriculum
    for name in ("batch_size", "induction_mix"):  # every process runs the same number of micro-batches
        if getattr(cfg, name) % env.world:
            raise ValueError(f"{name} {getattr(cfg, name)} must be a multiple of the number of processes {env.world}")
    cfg_dict = {**cfg.to_dict(), "init_from": str(init_from) if init_from else None}

    if init_from is not None:
        model = MetaForCausalLM.from_pretrained(init_from, dtype=torch.float32)
        if model.config.to_gpt_config() != cfg.model:
            raise ValueError(f"{init_from} is not the model of this config: its config is {model.config.to_gpt_config()}")
    else:
        model = new_model(cfg, stream.eos_id)
    model.to(env.device).train()
    optimizer = build_optimizer(model, cfg, fused=env.device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    start = 0
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
    if dist.is_initialized():
        dist.barrier()
    state = load_state(out, cfg_dict)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start = state["step"]
        if env.main:
            truncate_log(out / LOG_NAME, start)
    ddp = model
    if dist.is_initialized():
        # needle entries carry no meta-token, so meta-attention may get no gradient in a step
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None,
            find_unused_parameters=cfg.model.meta_attention,
        )
    log = (out / LOG_NAME).open("a") if env.main else None
    t_last, tokens_since = time.perf_counter(), 0
    steps = StepData(stream, cfg, env.rank, env.world)
    loader = (
        torch.utils.data.DataLoader(
            steps, batch_size=None, sampler=range(start, cfg.total_steps), num_workers=workers,
            prefetch_factor=4, collate_fn=lambda x: x,
        )
        if workers > 0
        else (steps[s] for s in range(start, cfg.total_steps))
    )
    for step, (phase, batches, width) in zip(range(start, cfg.total_steps), loader):
        batches = [Batch(b.ids.to(env.device), b.weights.to(env.device), b.tokens) for b in batches]
        sums = torch.tensor(
            [sum(b.weights[:, 1:].sum().item() for b in batches), sum(b.tokens for b in batches)],
            dtype=torch.float64, device=env.device,
        )
        if dist.is_initialized():
            dist.all_reduce(sums)
        denom = sums[0].to(torch.float32)  # one weighted mean over every row of the step, mixed-in ones too
        total_loss = torch.zeros((), device=env.device)
        chunks = [(b, lo) for b in batches for lo in range(0, b.ids.size(0), cfg.micro_batch)]
        for i, (batch, lo) in enumerate(chunks):
            micro = Batch(batch.ids[lo : lo + cfg.micro_batch], batch.weights[lo : lo + cfg.micro_batch], 0)
            sync = i == len(chunks) - 1 or ddp is model
            ctx = ddp.no_sync() if not sync else contextlib.nullcontext()
            with ctx:
                loss = batch_loss(ddp, micro, denom, float(env.world))
                loss.backward()
            total_loss += loss.detach() / env.world
        if dist.is_initialized():
            dist.all_reduce(total_loss)
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else torch.zeros(())
        )
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_since += int(sums[1].item())
        done = step + 1
        if env.main and (done % cfg.log_every == 0 or done == cfg.total_steps):
            now = time.perf_counter()
            record = {
                "step": done, "phase": phase, "loss": round(float(total_loss), 6), "lr": lr,
                "grad_norm": round(float(grad_norm), 4), "seq_len": width, "tokens": tokens_since,
                "tokens_per_s": round(tokens_since / max(now - t_last, 1e-9), 1), "time": round(time.time(), 3),
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
            if not quiet:
                print(
                    f"step {done}/{cfg.total_steps} {phase} len {width} loss {record['loss']:.4f} "
                    f"lr {lr:.2e} {record['tokens_per_s']:.0f} tok/s", file=sys.stderr, flush=True,
                )
            t_last, tokens_since = now, 0
        if env.main and (done % cfg.ckpt_every == 0 or done == cfg.total_steps):
            save_state(out, done, model, optimizer, scheduler, cfg_dict)
    if env.main:
        export(model, out, tok_dir, cfg_dict)
        log.close()
    if dist.is_initialized():
        dist.barrier()
    return out
