"""YaRN extension of a trained checkpoint, then (optionally) a few fine-tuning steps at the new window.

metabench.model.extend.extend writes the new config (YaRN rope_parameters,
window x factor) with the same weights; here the extended model may then be
fine-tuned on the task suite at its new window (curriculum (1.0,)), with the
source run's seed, final task mix (its anneal_tasks, else its tasks) and loss
weights, a short warmup and a lower lr, so the model gets used to YaRN's
interpolated low frequencies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from metabench.model.extend import extend
from metabench.train.loop import CONFIG_NAME, LOG_NAME, STATE_NAME, train
from metabench.train.presets import TrainConfig


def extend_and_finetune(
    src: str | os.PathLike,
    out: str | os.PathLike,
    factor: float,
    steps: int = 0,
    lr: float = 3e-4,
    batch_size: int | None = None,
    micro_batch: int | None = None,
    device: str = "auto",
    workers: int = 0,
    quiet: bool = False,
) -> Path:
    """extend(src, out, factor), then `steps` fine-tuning steps at the new window; returns out."""
    src, out = Path(src), Path(out)
    resuming = (out / STATE_NAME).is_file() and (out / "config.json").is_file()
    if not resuming:
        extend(src, out, factor)
        for name in (STATE_NAME, LOG_NAME, CONFIG_NAME):  # the source's training files describe the source
            (out / name).unlink(missing_ok=True)
    if steps <= 0:
        return out
    from metabench.model.configuration_meta import MetaConfig

    model = MetaConfig.from_pretrained(out).to_gpt_config()
    base = {}
    if (src / CONFIG_NAME).is_file():
        base = json.loads((src / CONFIG_NAME).read_text())
    cfg = TrainConfig(
        model=model,
        pretrain_steps=0,
        finetune_steps=steps,
        batch_size=batch_size or base.get("batch_size", 16),
        micro_batch=micro_batch or base.get("micro_batch", 16),
        lr=lr,
        min_lr=lr / 10,
        warmup_steps=max(1, steps // 10),
        curriculum=(1.0,),
        # the mix the source ended on: its anneal mix if it had one
        tasks=tuple(base.get("anneal_tasks") or base.get("tasks", TrainConfig.__dataclass_fields__["tasks"].default)),
        induction_mix=base.get("induction_mix", 0),  # keep copying alive here too (data.mix_rows)
        prompt_loss_weight=base.get("prompt_loss_weight", 0.1),
        seed=base.get("seed", 0) + 1,  # fresh samples, not the ones the source was trained on
        log_every=max(1, min(10, steps)),
        ckpt_every=max(1, min(100, steps)),
    )
    return train(cfg, out, device=device, init_from=out, workers=workers, quiet=quiet)
