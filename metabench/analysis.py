"""The paper's mechanistic analyses, on any meta-token checkpoint (arXiv 2509.16278, Section 5).

- Attention sharpness: the Shannon entropy (nats) of every causal self-attention
  row, averaged separately over rows at meta-token positions and at other
  positions, per layer and head; and the max pre-softmax logit of those rows.
  The paper reports meta rows 1.40 nats sharper on average. Rows are compared
  over the same prompts, so position effects (early rows have fewer keys)
  affect both groups alike; row 0 (a single key, entropy 0) is left out.
- Residual-stream similarity: per layer, the cosine similarity between the
  hidden state at a meta-token and the `window` tokens before it (mean over
  those tokens), and the same for non-meta positions as the baseline (the
  paper's Figure 2, right).
- Zeroed positional encoding: accuracy per task with full positions vs with
  the positional encoding removed at meta-token positions only (config flag
  `zero_meta_position`; the paper's Table 2 layout). It runs the real runner on
  the checkpoint and on a copy whose config sets the flag.

- Induction (not in the paper; it explains recall and copy scores): the mean
  next-token loss on a span of random key words and on the same span said
  again right after it. A model with induction heads copies the second saying
  (loss near 0); one without scores both alike, and cannot copy or recall.

Attention weights are recomputed from each block's own input (captured with a
forward hook) with the block's own projections and RoPE tables, so the
analysis reads exactly what the model computes without changing its code.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from metabench.errors import MetabenchError
from metabench.reference_tokenizer import META_TOKEN

PAPER_ENTROPY_DROP = 1.40  # nats: the paper's mean attention-entropy drop at meta-token rows


@dataclass(frozen=True)
class AnalysisConfig:
    checkpoint: str
    out: Path
    suite: str = "paper"
    lengths: tuple[str, ...] = ("1x",)
    samples: int = 10  # per task and length, for every analysis
    window: int = 8  # preceding tokens for the cosine similarity
    marker: str = META_TOKEN
    ablation: bool = True  # also run the zeroed-positional-encoding evaluation (slower)


def attention_rows(model: Any, ids: "torch.Tensor") -> list["torch.Tensor"]:  # noqa: F821
    """Causal self-attention probabilities per layer, each (nh, T, T), for one sequence ids (1, T)."""
    import torch
    import torch.nn.functional as F

    from metabench.model.rope import apply_rotary

    gpt = model.model if hasattr(model, "model") else model
    captured: list[tuple[torch.Tensor, Any]] = []
    hooks = [
        block.attn.register_forward_pre_hook(lambda mod, args: captured.append((args[0].detach(), args[1])))
        for block in gpt.h
    ]
    try:
        with torch.no_grad():
            gpt.hidden_states(ids)
    finally:
        for h in hooks:
            h.remove()
    out = []
    with torch.no_grad():
        for block, (x, inputs) in zip(gpt.h, captured):
            attn = block.attn
            B, T, C = x.shape
            hs = C // attn.n_head
            q, k, _ = attn.c_attn(x).split(C, dim=2)
            q = q.view(B, T, attn.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
            k = k.view(B, T, attn.n_head, hs).transpose(1, 2)
            if inputs.rope is not None:
                q, k = apply_rotary(q, *inputs.rope), apply_rotary(k, *inputs.rope)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T)
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
            out.append((scores[0], F.softmax(scores[0], dim=-1)))
    return out


def attention_stats(model: Any, sequences: Sequence[list[int]], meta_id: int) -> dict[str, Any]:
    """Mean entropy and max logit of attention rows at meta vs other positions, per layer and head."""
    import torch

    sums: dict[str, Any] = {}
    n_meta = n_other = 0
    for seq in sequences:
        ids = torch.tensor([seq])
        is_meta = ids[0] == meta_id
        is_meta[0] = False
        other = ~(ids[0] == meta_id)
        other[0] = False
        n_meta += int(is_meta.sum())
        n_other += int(other.sum())
        for layer, (scores, probs) in enumerate(attention_rows(model, ids)):
            ent = -(probs * probs.clamp_min(1e-30).log()).sum(-1)  # (nh, T)
            peak = scores.max(-1).values  # (nh, T)
            for key, rows, vals in (("ent_meta", is_meta, ent), ("ent_other", other, ent),
                                    ("max_meta", is_meta, peak), ("max_other", other, peak)):
                s = vals[:, rows].sum(-1)  # (nh,)
                sums.setdefault(key, {}).setdefault(layer, torch.zeros_like(s))
                sums[key][layer] += s
    if n_meta == 0:
        raise MetabenchError("no meta-token in the analysed prompts: pass --marker with the model's meta-token")
    layers = sorted(sums["ent_meta"])
    table = []
    for layer in layers:
        for head in range(sums["ent_meta"][layer].numel()):
            em = float(sums["ent_meta"][layer][head]) / n_meta
            eo = float(sums["ent_other"][layer][head]) / n_other
            mm = float(sums["max_meta"][layer][head]) / n_meta
            mo = float(sums["max_other"][layer][head]) / n_other
            table.append({"layer": layer, "head": head, "entropy_meta": em, "entropy_other": eo,
                          "entropy_drop": eo - em, "max_logit_meta": mm, "max_logit_other": mo,
                          "max_logit_diff": mm - mo})
    return {
        "rows": {"meta": n_meta, "other": n_other},
        "per_head": table,
        "mean_entropy_meta": sum(r["entropy_meta"] for r in table) / len(table),
        "mean_entropy_other": sum(r["entropy_other"] for r in table) / len(table),
        "mean_entropy_drop": sum(r["entropy_drop"] for r in table) / len(table),
        "mean_max_logit_diff": sum(r["max_logit_diff"] for r in table) / len(table),
    }


def residual_cosine(model: Any, sequences: Sequence[list[int]], meta_id: int, window: int = 8) -> list[dict[str, float]]:
    """Per layer (0 = embeddings): mean cosine of a position's residual stream with its `window` predecessors."""
    import torch
    import torch.nn.functional as F

    gpt = model.model if hasattr(model, "model") else model
    sums: dict[int, list[float]] = {}
    for seq in sequences:
        ids = torch.tensor([seq])
        states: list[torch.Tensor] = []
        hooks = [gpt.h[0].register_forward_pre_hook(lambda mod, args: states.append(args[0].detach()[0]))]
        hooks += [b.register_forward_hook(lambda mod, args, out: states.append(out.detach()[0])) for b in gpt.h]
        try:
            with torch.no_grad():
                gpt.hidden_states(ids)
        finally:
            for h in hooks:
                h.remove()
        is_meta = ids[0] == meta_id
        for layer, h in enumerate(states):  # h: (T, C)
            hn = F.normalize(h, dim=-1)
            for pos in range(window, h.size(0)):
                cos = float((hn[pos - window : pos] @ hn[pos]).mean())
                acc = sums.setdefault(layer, [0.0, 0, 0.0, 0])
                if bool(is_meta[pos]):
                    acc[0] += cos
                    acc[1] += 1
                else:
                    acc[2] += cos
                    acc[3] += 1
    return [{"layer": layer, "cos_meta": a[0] / max(a[1], 1), "cos_other": a[2] / max(a[3], 1), "n_meta": a[1]}
            for layer, a in sorted(sums.items())]


def induction_loss(model: Any, tok: Any, spans: int = 32, words: int = 20, seed: int = 0) -> dict[str, Any]:
    """Mean loss (nats) on the first and on the second saying of `spans` random key-word spans."""
    import random

    import torch
    import torch.nn.functional as F

    from metabench.words import KEY_WORDS

    rng = random.Random(seed)
    first: list[float] = []
    second: list[float] = []
    for _ in range(spans):
        span = tok.encode(" " + " ".join(rng.choices(KEY_WORDS, k=words)) + ".")
        ids = torch.tensor([span + span])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].float()
        loss = F.cross_entropy(logits, ids[0, 1:], reduction="none")
        n = len(span)
        first.append(loss[: n - 1].mean().item())  # predicting the first saying's tokens 1..n-1
        second.append(loss[n - 1 :].mean().item())  # predicting every token of the second saying
    return {"first": sum(first) / spans, "second": sum(second) / spans, "spans": spans, "words": words}


def _zeroed_copy(checkpoint: Path, into: Path) -> Path:
    """A copy of the checkpoint whose config turns on zero_meta_position (weights linked, not copied)."""
    into.mkdir(parents=True, exist_ok=True)
    for f in checkpoint.iterdir():
        if f.name == "config.json":
            cfg = json.loads(f.read_text())
            cfg["zero_meta_position"] = True
            (into / f.name).write_text(json.dumps(cfg, indent=2))
        elif f.is_file():
            (into / f.name).symlink_to(f.resolve())
    return into


def zero_pe_ablation(cfg: AnalysisConfig) -> list[dict[str, Any]]:
    """Per task and length: primary score with full vs zeroed positional encoding at meta-tokens."""
    from metabench.generate import Options
    from metabench.runner import RunConfig, run
    from metabench.suite import load_suite

    ckpt = Path(cfg.checkpoint)
    suite = load_suite(cfg.suite).with_overrides(lengths=cfg.lengths, samples=cfg.samples)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder in (("full", ckpt), ("zeroed", _zeroed_copy(ckpt, Path(tmp) / "zeroed"))):
            summary = run(RunConfig(model=f"hf:{folder}", suite=suite, out=cfg.out / f"ablation-{name}",
                                    tokenizer=str(ckpt), options=Options(marker=cfg.marker), progress=False))
            results[name] = {(c["entry"], c["length_label"]): c for c in summary["cells"] if c["depth"] is None}
        shutil.rmtree(Path(tmp) / "zeroed")
    rows = []
    for key, full in results["full"].items():
        zeroed = results["zeroed"][key]
        p = full["primary"]
        rows.append({"entry": key[0], "length": key[1], "metric": p, "chance": full["chance"],
                     "full": full["metrics"][p]["mean"], "zeroed": zeroed["metrics"][p]["mean"], "n": full["n"]})
    return rows


def analyze(cfg: AnalysisConfig) -> dict[str, Any]:
    """Run every analysis; write analysis.json into cfg.out and return it."""
    import torch
    from transformers import AutoModelForCausalLM

    from metabench.generate import Options, iter_samples
    from metabench.model import register
    from metabench.suite import load_suite
    from metabench.tokenizer import load_tokenizer

    ckpt = Path(cfg.checkpoint)
    if not (ckpt / "config.json").is_file():
        raise MetabenchError(f"{ckpt} is not a checkpoint folder (no config.json)")
    register()
    config = json.loads((ckpt / "config.json").read_text())
    meta_id = config.get("meta_token_id")
    if meta_id is None:
        raise MetabenchError(f"{ckpt}/config.json has no meta_token_id: these analyses need a meta-token model")
    tok = load_tokenizer(ckpt)
    if tok.backend.token_to_id(cfg.marker) != meta_id:
        raise MetabenchError(f"marker {cfg.marker!r} is not the checkpoint's meta-token (id {meta_id}); pass --marker")
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    window = config.get("max_position_embeddings") or config.get("block_size")
    suite = load_suite(cfg.suite).with_overrides(lengths=cfg.lengths, samples=cfg.samples)
    sequences = [tok.encode(s.prompt, specials=s.add_special_tokens)
                 for s in iter_samples(suite, tok, Options(context=window, marker=cfg.marker))]
    cfg.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "checkpoint": str(ckpt), "suite": cfg.suite, "lengths": list(cfg.lengths), "samples": cfg.samples,
        "prompts": len(sequences), "paper": {"mean_entropy_drop": PAPER_ENTROPY_DROP},
        "attention": attention_stats(model, sequences, meta_id),
        "residual_cosine": residual_cosine(model, sequences, meta_id, cfg.window),
        "induction": induction_loss(model, tok),
    }
    if cfg.ablation:
        result["zero_position_ablation"] = zero_pe_ablation(cfg)
    (cfg.out / "analysis.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def format_analysis(result: dict[str, Any]) -> str:
    a = result["attention"]
    lines = [
        f"attention entropy (nats): meta rows {a['mean_entropy_meta']:.3f}, other rows {a['mean_entropy_other']:.3f}, "
        f"drop {a['mean_entropy_drop']:+.3f} (paper: {PAPER_ENTROPY_DROP:.2f}); max-logit difference {a['mean_max_logit_diff']:+.3f}",
        "residual cosine with the preceding tokens, by layer (meta / other):",
        "  " + "  ".join(f"L{r['layer']} {r['cos_meta']:.2f}/{r['cos_other']:.2f}" for r in result["residual_cosine"]),
    ]
    if "induction" in result:
        i = result["induction"]
        lines.append(f"induction: loss on a {i['words']}-word random span {i['first']:.3f} nats, "
                     f"on the same span said again {i['second']:.3f} (copying makes it near 0)")
    if "zero_position_ablation" in result:
        lines.append(f"{'task':<24}{'length':>8}{'full':>8}{'zeroed':>8}{'chance':>8}")
        for r in result["zero_position_ablation"]:
            lines.append(f"{r['entry']:<24}{r['length']:>8}{100 * r['full']:>8.1f}{100 * r['zeroed']:>8.1f}{100 * r['chance']:>8.1f}")
    return "\n".join(lines)
