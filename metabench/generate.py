"""Generate a suite's samples at exact token lengths, streamed to JSONL.

    sample = f(entry spec, length, index, suite seed, tokenizer, options)

Each sample gets its own RNG from `derive_rng(seed, entry, variant, params,
length, index)`; the tokenizer is not part of the seed, so the same index
holds the same needle and question for every model, and only the amount of
filler differs. Samples stream out one at a time: memory does not grow with
the number of samples.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from metabench import __version__
from metabench.errors import LengthError, MetabenchError
from metabench.haystack import build_haystack
from metabench.grown import fit_grown
from metabench.lengths import FreshSource, Frame, Length, PoolSource, Source, TooShort, fit, parse_lengths
from metabench.schema import Sample, atomic_writer, dumps, write_jsonl
from metabench.seeding import derive_rng
from metabench.suite import Entry, Suite
from metabench.tasks.base import PLAIN_TURNS, Layout, Turns
from metabench.tokenizer import Tokenizer

MAX_RETRIES = 20  # redraws when a needle's key or value happens to occur in the user's filler


@dataclass(frozen=True)
class Options:
    context: int | None = None
    marker: str | None = None  # meta-token string to insert at the task's marker positions
    chat_template: bool = False
    haystack_files: tuple[str, ...] = ()
    verify: bool = False  # tokenize every prompt in full instead of trusting the additive count
    answer_prefix: bool = True  # end prompts with the task's answer prefix ("Answer:", RULER-style)
    system: str | None = None  # a system message inside the chat template (needs chat_template)


def answer_budget(tok: Tokenizer, target: str) -> int:
    """Tokens reserved for the answer: the target's own tokens plus a quarter (at least 4) of slack."""
    n = tok.count(" " + target)
    return n + max(4, math.ceil(n / 4))


def _frame(tok: Tokenizer, opts: Options, turns: Turns | None) -> tuple[Frame, bool]:
    """The text around a prompt, and whether the backend adds special tokens to it."""
    if turns is not None:  # a conversation is written in its own turns: there is no one message to put a system before
        if opts.system:
            raise MetabenchError("--system does not apply to conversation tasks (mrcr): drop --system, or run them apart")
        return Frame(before=turns.before, after=turns.after), not opts.chat_template
    if not opts.chat_template:
        if opts.system:
            raise MetabenchError("a system message goes inside a chat template: add --chat-template")
        return Frame(), True
    before, after = tok.chat_wrap(opts.system)
    # The rendered template carries its own BOS text; the backend must not add another.
    return Frame(before=before, after=after), False


def _turns(tok: Tokenizer, opts: Options) -> Turns:
    """A conversation task's turns: the chat template's own text with --chat-template, else plain labels."""
    return Turns(*tok.chat_turns()) if opts.chat_template else PLAIN_TURNS


def _marker_token_positions(tok: Tokenizer, prompt: str, offsets: list[int], specials: bool) -> list[int]:
    enc = tok.backend.encode(prompt, add_special_tokens=specials)
    starts = [s for s, _ in enc.offsets]
    out = []
    for off in offsets:
        idx = next((i for i, (s, e) in enumerate(enc.offsets) if e > s and s >= off), len(starts) - 1)
        out.append(idx)
    return out


def _source(spec, layout: Layout, rng, tok: Tokenizer, opts: Options) -> tuple[Source, str]:
    """The sample's filler units and the name recorded for them."""
    if layout.units is not None:  # units made for this sample alone (conversation turns)
        return FreshSource(layout.units, rng, tok), layout.filler
    if layout.filler in ("kv_pairs", "needles"):
        return FreshSource(spec.filler_units, rng, tok), layout.filler
    hay = build_haystack(tok, opts.haystack_files or None, noise=layout.filler == "noise")
    return PoolSource(hay, rng), hay.name


def _smallest_length(entry: Entry, need: int, index: int, seed: int, tok: Tokenizer, opts: Options) -> int:
    """The smallest length from `need` up at which sample `index` fits.

    A sample's seed includes its length, so its fixed text (keys, templates)
    differs a little from one length to the next: step up until one holds it.
    """
    for _ in range(256):
        try:
            make_sample(entry, Length(str(need), need), index, seed, tok, opts, probe=True)
            return need
        except TooShort as exc:
            need += exc.over
    raise RuntimeError(f"no length holds {entry.name} sample {index}; please report this with the tokenizer")


def make_sample(
    entry: Entry, length: Length, index: int, seed: int, tok: Tokenizer, opts: Options, probe: bool = False
) -> Sample:
    """Sample `index` of `entry` at `length`; `probe` lets a too-short length raise TooShort itself."""
    spec = entry.spec
    params = spec.params()
    turns = _turns(tok, opts) if spec.conversation else None
    frame, add_specials = _frame(tok, opts, turns)
    for attempt in range(MAX_RETRIES):
        parts = (seed, entry.task, entry.variant, dumps(params), length.tokens, index)
        rng = derive_rng(*parts, attempt) if attempt else derive_rng(*parts)
        if turns is not None:
            layout: Layout = spec.layout(rng, index, opts.marker, turns)  # type: ignore[call-arg]
        else:
            layout = spec.layout(rng, index, opts.marker)
        if not opts.answer_prefix:
            layout = dataclasses.replace(layout, answer_prefix="")
        budget_answer = answer_budget(tok, layout.target)
        label = f"{entry.name}@{length.label}"
        try:
            if layout.grown is not None:
                fitted, grown_info = fit_grown(
                    layout, tok, length.tokens - budget_answer, frame,
                    verify=opts.verify, specials=add_specials, label=label,
                )
                layout = dataclasses.replace(layout, info={**layout.info, **grown_info})
                haystack_name = "none"
            else:
                source, haystack_name = _source(spec, layout, rng, tok, opts)
                fitted = fit(
                    layout, tok, source, length.tokens - budget_answer, frame,
                    verify=opts.verify, specials=add_specials, label=label,
                )
        except TooShort as exc:
            if probe:
                raise
            need = _smallest_length(entry, length.tokens + exc.over, index, seed, tok, opts)
            what = "its smallest word list, prompt and answer" if layout.grown else "its prompt and answer without filler"
            raise LengthError(
                f"length {length.label} ({length.tokens} tokens) is too short for {entry.name}: {what} "
                f"need more; use lengths of at least {need} tokens"
            ) from None
        fixed = frame.before + layout.instruction + "".join(b.text for b in layout.blocks) + layout.question
        fixed += frame.after + layout.answer_prefix
        if all(fitted.prompt.count(s) == fixed.count(s) for s in layout.avoid):
            break
    else:
        fix = ("use a shorter length or fewer keys: the distractor needles are drawn from the same key words"
               if layout.filler == "needles" else "use other haystack files")
        raise MetabenchError(
            f"{entry.name}: after {MAX_RETRIES} draws a needle key or value still occurs in the haystack text; {fix}"
        )
    offsets = [fitted.block_offsets[i] + m for i, b in enumerate(layout.blocks) for m in b.markers]
    # Block offsets follow layout order; a block's markers are relative to its own start.
    token_positions = (
        _marker_token_positions(tok, fitted.prompt, offsets, add_specials) if opts.marker and offsets else None
    )
    primary = next((i for i, b in enumerate(layout.blocks) if b.primary), None)
    info = layout.info
    named = {b.name: round(fitted.block_depths[i], 6) for i, b in enumerate(layout.blocks) if b.name}
    if named:
        info = {**info, "depths_actual": named}
    return Sample(
        id=f"{entry.name}/{length.label}/{index}",
        task=entry.task,
        variant=entry.variant,
        entry=entry.name,
        index=index,
        seed=seed,
        length=length.tokens,
        length_label=length.label,
        prompt=fitted.prompt,
        prompt_tokens=fitted.prompt_tokens,
        answer_budget=budget_answer,
        target=layout.target,
        answers=list(layout.answers),
        metrics=list(spec.metrics),
        depth=layout.depth,
        depth_actual=round(fitted.block_depths[primary], 6) if primary is not None else None,
        marker=opts.marker,
        marker_offsets=offsets,
        marker_token_positions=token_positions,
        filler_tokens=fitted.filler_tokens,
        add_special_tokens=add_specials,
        chat_template=opts.chat_template,
        tokenizer=tok.fingerprint,
        haystack=haystack_name,
        chance=round(spec.chance(), 6),
        params=params,
        info=info,
    )


def iter_samples(suite: Suite, tok: Tokenizer, opts: Options) -> Iterator[Sample]:
    """All samples of a suite: entry by entry, length by length, index by index."""
    lengths = parse_lengths(list(suite.lengths), opts.context)
    for entry in suite.entries:
        for length in lengths:
            for i in range(entry.samples):
                yield make_sample(entry, length, i, suite.seed, tok, opts)


def check_lengths(suite: Suite, tok: Tokenizer, opts: Options) -> None:
    """Fail fast, before writing anything, when a length is too short for an entry."""
    lengths = parse_lengths(list(suite.lengths), opts.context)
    shortest = min(lengths, key=lambda l: l.tokens)
    for entry in suite.entries:
        make_sample(entry, shortest, 0, suite.seed, tok, opts)


def manifest(suite: Suite, tok: Tokenizer, opts: Options, count: int) -> dict:
    """What a data file was generated from; deterministic (no timestamps), written beside it."""
    lengths = parse_lengths(list(suite.lengths), opts.context)
    return {
        "metabench_version": __version__,
        "suite": suite.name,
        "suite_source": suite.source,
        "seed": suite.seed,
        "context": opts.context,
        "lengths": {l.label: l.tokens for l in lengths},
        "entries": [
            {"name": e.name, "task": e.task, "variant": e.variant, "samples": e.samples, "params": e.spec.params()}
            for e in suite.entries
        ],
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(opts).items()},
        "tokenizer": {"path": tok.path, "fingerprint": tok.fingerprint},
        "samples": count,
    }


def generate_to_file(suite: Suite, tok: Tokenizer, opts: Options, out: str | Path, progress: bool = False) -> int:
    """Write the suite's samples to `out` (JSONL) and `out` + '.manifest.json'; nothing is left on failure."""
    check_lengths(suite, tok, opts)
    total = sum(e.samples for e in suite.entries) * len(suite.lengths)
    out = Path(out)
    samples = iter_samples(suite, tok, opts)
    if progress:
        from tqdm import tqdm

        samples = tqdm(samples, total=total, unit="sample", desc=f"generate {suite.name}")
    n = write_jsonl(samples, out)
    with atomic_writer(out.with_name(out.name + ".manifest.json")) as m:
        m.write(dumps(manifest(suite, tok, opts, n)) + "\n")
    return n
