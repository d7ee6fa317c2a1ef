"""Training configurations: one frozen dataclass, and named presets.

A run is an optional induction phase (short rows of a random key-word span
said twice), pre-training (procedural text with meta-tokens at uniformly random
positions, M = k * n with k = 0.1) and then fine-tuning on the task suite
(meta-tokens at the task positions) through a curriculum of increasing
lengths, under one AdamW schedule: linear warmup, cosine decay to min_lr.
`induction_mix` span-said-twice rows, with loss on the second saying only, join
every pre-training and fine-tuning step (data.Stream.mix_rows).

`PRESETS` is the one table of named sizes. A `Preset` holds the model (the
GPTConfig inside its TrainConfig), how it trains, and what `metabench
reproduce` does with it (ReproducePlan), so a name means one thing everywhere:

- micro: 1 x 32, block 128; seconds on one CPU core, for tests (resume after
  SIGKILL, DDP parity, the whole reproduce pipeline).
- tiny: the bundled reference models: 4 x 128, block 256 (every default-suite
  task fits at 1x), 1.6M parameters, sized to train on 2 CPU cores in under
  30 minutes. 800 pre-training + 3200 fine-tuning steps of 16 rows, mostly on
  the tasks (pre-training alone does not teach recall). 8 induction rows join
  every step: they are what makes the model copy, the skill recall rests on.
  The last 400 fine-tuning steps draw list_recall for a third of their rows
  (TINY_ANNEAL_TASKS): on the uniform mix the model finds the queried list but
  not item j in it.
- small: 4 x 256, block 512; a GPU (or a patient CPU). No induction rows: the
  mix was tuned on tiny only; pass --induction-mix to try it.
- paper: the paper's 12 x 768, block 1024, batch 32 x 1024 tokens; GPUs. The
  paper's recipe, so no induction rows.

Every preset uses the bundled reference tokenizer (reference_tokenizer.py:
4096 ids, `<|meta|>` = 1). The paper used GPT-2's vocabulary; loading GPT-2's
tokenizer needs a hub (or a copy we cannot ship), and the bundled BPE covers
every word the suites use, so `paper` keeps the paper's depth, width and window with a 4096-id vocabulary
(117M parameters with meta-attention, 88M without, instead of 152M / 124M;
only the embedding shrinks).

How the tiny recipe was found (the variants measured and not adopted, with
their scores) and what its training costs: reference_model/MODEL_CARD.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from metabench.model.model import GPTConfig
from metabench.reference_tokenizer import META_TOKEN_ID, VOCAB_SIZE

DEFAULT_TASKS = (
    "list_recall/default",
    "kv_recall/single",
    "copy/default",
    "needle/single",
    "needle/multikey",
    "needle/multivalue",
    "needle/multiquery",
    "segment_count/default",
    "parity/default",
)  # the default suite's entries

# tiny's last 400 fine-tuning steps (all at 1x) draw each row's task uniformly from this
# tuple: list_recall, listed 4 times, gets 4/12 of the rows and every other entry 1/12.
# What this mix changed, against the uniform one and against weighting from the first
# fine-tuning step: reference_model/MODEL_CARD.md ("How the recipe was found").
TINY_ANNEAL_TASKS = DEFAULT_TASKS + ("list_recall/default",) * 3


@dataclass(frozen=True)
class TrainConfig:
    model: GPTConfig
    induction_steps: int = 0  # first: short rows of a random key-word span said twice (data.induction_row)
    induction_mix: int = 0  # induction rows added to every pre-training and fine-tuning step (data.mix_rows)
    pretrain_steps: int = 0  # procedural text with random meta-tokens
    finetune_steps: int = 100  # task suite, split evenly over the curriculum's stages
    batch_size: int = 16  # rows per optimizer step, over all processes together
    micro_batch: int = 16  # rows per forward/backward in one process (gradient accumulation above it)
    lr: float = 1e-3
    min_lr: float = 1e-4  # the cosine decays to this
    warmup_steps: int = 20
    weight_decay: float = 0.1  # on matrices only (nanoGPT): not on biases, LayerNorms
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    meta_fraction: float = 0.1  # pre-training: M = round(k * block) meta-tokens per row (paper: k = 0.1)
    curriculum: tuple[float, ...] = (0.5, 0.75, 1.0)  # fine-tuning lengths, as fractions of the block
    tasks: tuple[str, ...] = DEFAULT_TASKS  # "family/variant" entries to fine-tune on, drawn uniformly per row
    anneal_steps: int = 0  # the last anneal_steps fine-tuning steps draw their tasks from anneal_tasks instead
    anneal_tasks: tuple[str, ...] = ()  # an entry listed n times is drawn n times as often
    prompt_loss_weight: float = 0.1  # loss weight of prompt tokens; answer tokens (and EOS) weigh 1
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 100  # steps between resumable training states (and at the end)

    def __post_init__(self) -> None:
        if self.model.meta_token_id is None:
            raise ValueError("training injects meta-tokens: the model config needs meta_token_id")
        for name in ("batch_size", "micro_batch", "log_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("induction_steps", "induction_mix", "pretrain_steps", "finetune_steps", "warmup_steps",
                     "anneal_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.total_steps < 1:
            raise ValueError("induction_steps + pretrain_steps + finetune_steps must be >= 1")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"need 0 < min_lr <= lr, got min_lr {self.min_lr}, lr {self.lr}")
        if not 0.0 <= self.meta_fraction < 1.0:
            raise ValueError(f"meta_fraction must be in [0, 1), got {self.meta_fraction}")
        if self.finetune_steps and not self.curriculum:
            raise ValueError("fine-tuning needs at least one curriculum length (fractions of the block)")
        if any(not 0 < f for f in self.curriculum) or list(self.curriculum) != sorted(self.curriculum):
            raise ValueError(f"curriculum must be increasing positive fractions of the block, got {self.curriculum}")
        if self.finetune_steps and not self.tasks:
            raise ValueError("fine-tuning needs at least one task entry, e.g. 'list_recall/default'")
        if self.anneal_steps > self.finetune_steps:
            raise ValueError(
                f"anneal_steps ({self.anneal_steps}) are the last fine-tuning steps: at most finetune_steps "
                f"({self.finetune_steps})"
            )
        if self.anneal_steps and not self.anneal_tasks:
            raise ValueError("anneal_steps > 0 needs anneal_tasks, the entries those steps draw from")
        if self.prompt_loss_weight < 0:
            raise ValueError(f"prompt_loss_weight must be >= 0, got {self.prompt_loss_weight}")

    @property
    def total_steps(self) -> int:
        return self.induction_steps + self.pretrain_steps + self.finetune_steps

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; what a training state is checked against on resume."""
        d = dataclasses.asdict(self)
        d["model"]["rope"] = self.model.rope.to_dict()
        return _lists(d)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with training fields (and `meta_attention`, `block_size` of the model) replaced; None = keep."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        model_fields = {k: overrides.pop(k) for k in ("meta_attention", "block_size") if k in overrides}
        model = dataclasses.replace(self.model, **model_fields) if model_fields else self.model
        return dataclasses.replace(self, model=model, **overrides)


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


@dataclass(frozen=True)
class ReproducePlan:
    """What `metabench reproduce` does with a preset beyond training it."""

    extend_steps: int  # fine-tuning steps at the YaRN-extended window
    eval_samples: int  # per task and length
    analysis_samples: int  # per task, at 1x, for the attention and cosine analyses
    ablation: bool = True  # the zeroed-positional-encoding evaluation


@dataclass(frozen=True)
class Preset:
    """One named size: its model (train.model), how it trains, and what reproduce does with it."""

    train: TrainConfig
    reproduce: ReproducePlan

    @property
    def model(self) -> GPTConfig:
        return self.train.model


_BUNDLED = {"vocab_size": VOCAB_SIZE, "meta_token_id": META_TOKEN_ID}  # the reference tokenizer's

PRESETS: dict[str, Preset] = {
    "micro": Preset(
        TrainConfig(
            model=GPTConfig(block_size=128, n_layer=1, n_head=2, n_embd=32, **_BUNDLED),
            induction_steps=2,
            induction_mix=2,
            pretrain_steps=2,
            finetune_steps=4,
            batch_size=4,
            micro_batch=2,
            warmup_steps=2,
            curriculum=(1.0,),
            tasks=("list_recall/easy", "parity/default"),
            log_every=1,
            ckpt_every=2,
        ),
        ReproducePlan(extend_steps=2, eval_samples=2, analysis_samples=2),
    ),
    "tiny": Preset(
        TrainConfig(
            # a 256-token window fits every task of the default suite at 1x (the longest needs 178)
            model=GPTConfig(block_size=256, n_layer=4, n_head=4, n_embd=128, **_BUNDLED),
            induction_mix=8,
            pretrain_steps=800,
            finetune_steps=3200,
            anneal_steps=400,
            anneal_tasks=TINY_ANNEAL_TASKS,
            batch_size=16,
            micro_batch=16,
            lr=2e-3,
            min_lr=2e-4,
            warmup_steps=50,
            curriculum=(0.5, 0.75, 1.0),
            log_every=10,
            ckpt_every=100,
        ),
        ReproducePlan(extend_steps=200, eval_samples=20, analysis_samples=10),
    ),
    "small": Preset(
        TrainConfig(
            model=GPTConfig(block_size=512, n_layer=4, n_head=4, n_embd=256, **_BUNDLED),
            pretrain_steps=1000,
            finetune_steps=4000,
            batch_size=32,
            micro_batch=16,
            lr=1e-3,
            warmup_steps=200,
            curriculum=(0.25, 0.5, 1.0),
            ckpt_every=250,
        ),
        ReproducePlan(extend_steps=400, eval_samples=50, analysis_samples=20),
    ),
    "paper": Preset(
        TrainConfig(
            model=GPTConfig(block_size=1024, n_layer=12, n_head=12, n_embd=768, **_BUNDLED),
            pretrain_steps=20000,
            finetune_steps=5000,
            batch_size=32,
            micro_batch=8,
            lr=6e-4,
            min_lr=6e-5,
            warmup_steps=1000,
            curriculum=(0.25, 0.5, 1.0),
            ckpt_every=500,
        ),
        ReproducePlan(extend_steps=1000, eval_samples=100, analysis_samples=50),
    ),
}
