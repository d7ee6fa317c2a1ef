"""The training streams: pre-training text with random meta-tokens, and task samples.

Every row is a pure function of (seed, phase, step, row): process r of W takes
rows r, r + W, ... of the global batch, so one process and W processes see the
same global batch, and the data position of a resumed run is just its step.

A row is token ids (T,) and loss weights (T,): weight[t] is the weight of
predicting ids[t] from ids[:t] (weight[0] = 0). Meta-token targets weigh 0
(the paper takes no loss on meta-token positions; the model's own loss does the
same), and so does padding.

- Induction (before pre-training; `induction_steps`, 0 = none): each row is
  one span of 4-24 random key words said twice, without meta-tokens. Recall
  and copying rest on induction heads (find the current token's earlier
  occurrence, copy what followed); procedural text, whose words grammar
  predicts, does not make them form, and random meta-tokens stop them forming
  (see induction_row). `induction_mix` more such rows (their own draws, loss
  on the second saying only) join every pre-training and fine-tuning step as
  a short batch of their own (see mix_rows).
- Pre-training (paper, section 3): procedural sentences, packed to the block,
  with M = round(k * block) meta-tokens (k = 0.1) at uniformly random positions.
  Each row draws its sentences from a pool of PRETRAIN_POOL of its own, so
  sentences recur within the row (see pretrain_row).
- Fine-tuning: metabench.generate.make_sample with Options(marker="<|meta|>"),
  so meta-tokens sit exactly where the evaluation puts them, at the
  curriculum's length; the row is prompt + " " + target + EOS, tokenized as
  the runner does (the prompt alone, then the answer). Choice: loss on every
  token, prompt tokens down-weighted (prompt_loss_weight, 0.1 in the presets)
  and the answer and EOS at 1. The answer is the skill we measure; the prompt's
  language modelling (including the filler) still teaches the model to read,
  at little cost. EOS teaches the model to stop, so the runner's greedy
  answer ends where the target does.
  Training samples use seed TRAIN_SEED_BASE + seed, never the suites' seed 0,
  so no evaluated sample is trained on. Each row's task is drawn uniformly from
  the config's entries; the last `anneal_steps` steps draw from `anneal_tasks`
  instead (an entry listed n times is drawn n times as often): a late shift of
  the mix towards a skill that needs more samples than a uniform share gives
  (list_recall on the tiny model, see presets.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import torch

from metabench.errors import LengthError
from metabench.generate import Options, make_sample
from metabench.haystack import procedural_sentences
from metabench.lengths import Length
from metabench.reference_tokenizer import BUNDLED, EOS_TOKEN, META_TOKEN
from metabench.seeding import derive_rng
from metabench.suite import Entry
from metabench.tasks import resolve
from metabench.tokenizer import Tokenizer
from metabench.words import KEY_WORDS

if TYPE_CHECKING:
    from metabench.train.presets import TrainConfig

TRAIN_SEED_BASE = 1_000_003  # training samples never share the evaluation suites' seed (0)
PRETRAIN_POOL = 6  # distinct sentences per pre-training row (about 24 fill a 256-token row)
SPAN_WORDS = (4, 24)  # an induction row's span, in words: uniform over this range


@dataclass(frozen=True)
class Batch:
    ids: torch.Tensor  # (B, T) long
    weights: torch.Tensor  # (B, T) float: loss weight of predicting ids[:, t] (column 0 is 0)
    tokens: int  # real (non-padding) tokens, for throughput


def entry_for(name: str) -> Entry:
    """'family/variant' -> a suite Entry (one sample per index; the count is unused here)."""
    if "/" not in name:
        raise ValueError(f"task entry {name!r}: write it as family/variant, e.g. 'list_recall/default'")
    family, variant = name.split("/", 1)
    spec = resolve(family, variant)
    return Entry(name=name, task=family, variant=variant, spec=spec, samples=1)


class Stream:
    """Rows of both phases for one model window and tokenizer."""

    def __init__(
        self,
        tok: Tokenizer,
        block_size: int,
        seed: int,
        meta_fraction: float = 0.1,
        tasks: tuple[str, ...] = (),
        curriculum: tuple[float, ...] = (1.0,),
        prompt_loss_weight: float = 0.1,
        anneal_steps: int = 0,
        anneal_tasks: tuple[str, ...] = (),
    ) -> None:
        self.tok, self.block, self.seed = tok, block_size, seed
        self.meta_fraction, self.prompt_loss_weight = meta_fraction, prompt_loss_weight
        self.meta_id = _special_id(tok, META_TOKEN)
        self.eos_id = _special_id(tok, EOS_TOKEN)
        self.entries = tuple(entry_for(t) for t in tasks)
        self.anneal_steps = anneal_steps
        self.anneal_entries = tuple(entry_for(t) for t in anneal_tasks)
        self.lengths = tuple(round(f * block_size) for f in curriculum)
        self.options = Options(context=block_size, marker=META_TOKEN)

    @classmethod
    def for_config(cls, tok: Tokenizer, cfg: TrainConfig) -> Stream:
        """The stream a training run of cfg reads: its block, seed, meta density, task mixes and curriculum."""
        return cls(
            tok, cfg.model.block_size, cfg.seed, cfg.meta_fraction, cfg.tasks, cfg.curriculum, cfg.prompt_loss_weight,
            cfg.anneal_steps, cfg.anneal_tasks,
        )

    # -- induction ----------------------------------------------------------------------

    def induction_row(self, step: int, row: int, key: str = "induction") -> tuple[list[int], list[float]]:
        """A span of random key words, said twice, with no meta-tokens.

        key names the draw: "induction" for the induction phase, "mix/pretrain" and
        "mix/finetune" for the rows mixed into the later phases (see mix_rows).

        The second saying is predictable only by copying, so this is the cheapest signal that
        makes induction heads form. No meta-tokens: random ones break "the token after the
        earlier occurrence", the pattern an induction head copies. Spans vary in length so
        that no fixed look-back offset can stand in for matching content. Rows are short
        (~30 tokens); a step pads them to its longest. The measurements behind each choice:
        reference_model/MODEL_CARD.md ("How the recipe was found").
        """
        rng = derive_rng(key, self.seed, step, row)
        span = self.tok.encode(" " + " ".join(rng.choices(KEY_WORDS, k=rng.randint(*SPAN_WORDS))) + ".")
        ids = span + span
        if len(ids) > self.block:
            raise ValueError(
                f"an induction row of {len(ids)} tokens does not fit the {self.block}-token block: "
                "use a larger block or no induction phase (--induction-steps 0)"
            )
        return ids, [0.0] + [1.0] * (len(ids) - 1)

    # -- pre-training -----------------------------------------------------------------

    def pretrain_row(self, step: int, row: int) -> tuple[list[int], list[float]]:
        rng = derive_rng("pretrain", self.seed, step, row)
        T = self.block
        M = round(self.meta_fraction * T)
        # sentences drawn with replacement from a small pool of this row's own, so sentences
        # repeat: predicting a repeat means looking back and copying (induction), the skill
        # that recall and copying build on and that plain procedural text rarely asks for
        pool = procedural_sentences(rng, PRETRAIN_POOL)
        text: list[int] = []
        while len(text) < T - M:
            text += self.tok.encode(" " + " ".join(rng.choices(pool, k=4)))
        return with_meta_tokens(rng, text, M, self.meta_id, T)  # uniformly random positions, M = k * n

    # -- fine-tuning ------------------------------------------------------------------

    def stage_length(self, step: int, steps: int) -> int:
        """The curriculum's length at fine-tuning step `step` of `steps` (equal shares, increasing)."""
        stage = min(len(self.lengths) - 1, step * len(self.lengths) // max(1, steps))
        return self.lengths[stage]

    @cached_property
    def feasible(self) -> dict[str, tuple[int, ...]]:
        """Entry -> the curriculum lengths its prompt fits in; an entry that fits none is an error."""
        out: dict[str, tuple[int, ...]] = {}
        for entry in {e.name: e for e in self.entries + self.anneal_entries}.values():
            fits = []
            for n in self.lengths:
                try:
                    make_sample(entry, Length(f"{n}", n), 0, TRAIN_SEED_BASE + self.seed, self.tok, self.options)
                except LengthError:
                    continue
                fits.append(n)
            if not fits:
                raise ValueError(
                    f"task {entry.name} does not fit in any curriculum length {list(self.lengths)} "
                    f"(block {self.block}): use a larger block or drop the task"
                )
            out[entry.name] = tuple(fits)
        return out

    def finetune_row(self, step: int, row: int, length: int, anneal: bool = False) -> tuple[list[int], list[float]]:
        """One task sample at `length` tokens (or the shortest longer stage its prompt fits in).

        The task is drawn uniformly from the entries (anneal: from the anneal entries); an
        entry listed n times is drawn n times as often. The draw takes the same random
        numbers either way, so a run with an anneal mix sees the same rows as one without
        until its anneal steps begin.
        """
        rng = derive_rng("finetune", self.seed, step, row)
        entries = self.anneal_entries if anneal else self.entries
        entry = entries[rng.randrange(len(entries))]
        fits = self.feasible[entry.name]
        index = rng.randrange(2**31)
        # a sample's fixed text varies in length (keys, values), so one that does not fit the
        # stage's length takes the next longer one; a task that fits none at this index is an error
        candidates = [f for f in fits if f >= length] or [fits[-1]]
        for n in candidates:
            try:
                sample = make_sample(
                    entry, Length(f"{n}", n), index, TRAIN_SEED_BASE + self.seed, self.tok, self.options
                )
                break
            except LengthError as exc:
                error = exc
        else:
            raise ValueError(f"{entry.name} sample {index} fits no curriculum length up to {n}: {error}")
        prompt = self.tok.encode(sample.prompt, specials=sample.add_special_tokens)
        answer = self.tok.encode(" " + sample.target) + [self.eos_id]
        ids = prompt + answer
        w = self.prompt_loss_weight
        weights = [0.0] + [0.0 if i == self.meta_id else w for i in prompt[1:]] + [1.0] * len(answer)
        return ids, weights

    def mix_rows(self, phase: str, step: int, row_ids: range | list[int]) -> Batch:
        """Induction rows mixed into step `step` of `phase` ("pretrain" or "finetune"): their own batch.

        A span said twice, with loss only on the second saying after its first token:
        the tokens only copying predicts. (The first saying is random words; loss on it
        only pulls the model's output towards the key-word list.) They keep copying in
        the training signal of every step: an induction phase alone, before
        pre-training, formed induction heads that the later phases undid (see
        reference_model/MODEL_CARD.md). The rows are short, so they travel as their own
        batch, padded to their longest row rather than to the block.
        """
        rows = []
        for r in row_ids:
            ids, _ = self.induction_row(step, r, key=f"mix/{phase}")
            half = len(ids) // 2  # loss only where copying predicts: the second saying after its first token
            rows.append((ids, [0.0] * (half + 1) + [1.0] * (half - 1)))
        return self.batch(rows)

    # -- batches ------------------------------------------------------------------------

    def batch(self, rows: list[tuple[list[int], list[float]]], width: int | None = None) -> Batch:
        """Right-pad rows with EOS at weight 0 (causal attention never looks right, so no mask is needed)."""
        width = width or max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), self.eos_id, dtype=torch.long)
        weights = torch.zeros((len(rows), width), dtype=torch.float32)
        for b, (row_ids, row_w) in enumerate(rows):
            if len(row_ids) > width:
                raise ValueError(f"row of {len(row_ids)} tokens does not fit the batch width {width}")
            ids[b, : len(row_ids)] = torch.tensor(row_ids)
            weights[b, : len(row_w)] = torch.tensor(row_w)
        return Batch(ids, weights, sum(len(row_ids) for row_ids, _ in rows))

    def rows(
        self, phase: str, step: int, row_ids: range | list[int], finetune_steps: int = 1
    ) -> tuple[Batch, int]:
        """This process's rows of the global batch at `step` of `phase`, and the padded width.

        phase "induction" / "pretrain" / "finetune": step counts that phase's steps.
        Every row of a step is padded to the step's curriculum length (one shape per stage).
        """
        if phase == "induction":
            rows = [self.induction_row(step, r) for r in row_ids]
            width = max(len(ids) for ids, _ in rows)
            return self.batch(rows, width), width
        if phase == "pretrain":
            return self.batch([self.pretrain_row(step, r) for r in row_ids], self.block), self.block
        if phase == "finetune":
            length = self.stage_length(step, finetune_steps)
            anneal = self.anneal_steps > 0 and step >= finetune_steps - self.anneal_steps
            rows = [self.finetune_row(step, r, length, anneal) for r in row_ids]
            width = max([length, *(len(ids) for ids, _ in rows)])
            return self.batch(rows, width), width
        raise ValueError(f"phase must be 'induction', 'pretrain' or 'finetune', got {phase!r}")


def with_meta_tokens(
    rng: random.Random, text: list[int], m: int, meta_id: int, length: int
) -> tuple[list[int], list[float]]:
    """`length` ids: text in order with m meta-tokens at uniformly random positions, and loss weights.

    Weight 1 on every target but position 0 and the meta-tokens (no loss on meta-token
    targets, as the paper). text must hold at least length - m tokens.
    """
    meta_at = set(rng.sample(range(length), m))
    words = iter(text)
    ids = [meta_id if t in meta_at else next(words) for t in range(length)]
    return ids, [0.0] + [0.0 if i == meta_id else 1.0 for i in ids[1:]]


def _special_id(tok: Tokenizer, token: str) -> int:
    tid = tok.backend.token_to_id(token)
    if tid is None:
        raise ValueError(
            f"tokenizer {tok.path} has no {token!r} token; train with the bundled reference tokenizer "
            f"({BUNDLED}), which has it as a special token"
        )
    return tid
