"""KV-cache decoding (self- and meta-attention state) equals full recomputation."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from metabench.model.modeling_meta import CACHE_FIELD, MetaCache

# left-padded batch: row 0 has 3 pads; meta-tokens in prompts and continuations, at different steps
PROMPT_META = [[5, 6, 11], [2, 9]]
PAD = [3, 0]
T_PROMPT, T_NEW = 16, 10
CONTINUATION_META = {0: [2, 3, 7], 1: [3, 8]}  # step indices of forced meta-tokens in the continuation


def padded_batch(ids_with_meta, meta_id):
    ids = ids_with_meta(PROMPT_META, T_PROMPT + T_NEW, seed=1)
    for b, steps in CONTINUATION_META.items():
        ids[b, [T_PROMPT + s for s in steps]] = meta_id
    mask = torch.ones_like(ids)
    for b, pad in enumerate(PAD):
        mask[b, :pad] = 0
        ids[b, :pad] = meta_id  # hostile padding: masked meta-tokens must not count as meta-tokens
    return ids, mask


@pytest.mark.parametrize("overrides", [{}, {"position_encoding": "absolute"}, {"zero_meta_position": True}])
def test_token_by_token_equals_full_forward(hf_model, ids_with_meta, meta_id, overrides):
    model = hf_model(**overrides)
    ids, mask = padded_batch(ids_with_meta, meta_id)
    with torch.no_grad():
        full = model(ids, attention_mask=mask, use_cache=False).logits  # (B, T, V)
        out = model(ids[:, :T_PROMPT], attention_mask=mask[:, :T_PROMPT], use_cache=True)
        steps = [out.logits]
        for t in range(T_PROMPT, ids.size(1)):
            out = model(
                ids[:, t : t + 1], attention_mask=mask[:, : t + 1], cache=getattr(out, CACHE_FIELD), use_cache=True
            )
            steps.append(out.logits)
    incremental = torch.cat(steps, dim=1)
    real = mask.bool()
    assert full[real].std() > 1.0  # sharpened model: logits are not near-constant
    torch.testing.assert_close(incremental[real], full[real], atol=1e-4, rtol=1e-4)
    # the meta cache grew by one slot per step where some row had a meta-token
    cache: MetaCache = getattr(out, CACHE_FIELD)
    meta_steps = len(set().union(*CONTINUATION_META.values()))
    assert cache.layers[cache.n_layer].keys.size(2) == max(map(len, PROMPT_META)) + meta_steps


def test_chunked_prefill_equals_full_forward(hf_model, ids_with_meta, meta_id):
    model = hf_model()
    ids, mask = padded_batch(ids_with_meta, meta_id)
    with torch.no_grad():
        full = model(ids, attention_mask=mask, use_cache=False).logits
        cache, chunks = None, []
        for start in range(0, ids.size(1), 7):  # chunks with several meta-tokens each, after cached ones
            end = min(start + 7, ids.size(1))
            out = model(ids[:, start:end], attention_mask=mask[:, :end], cache=cache, use_cache=True)
            cache = getattr(out, CACHE_FIELD)
            chunks.append(out.logits)
    real = mask.bool()
    torch.testing.assert_close(torch.cat(chunks, dim=1)[real], full[real], atol=1e-4, rtol=1e-4)


class ForceMeta(LogitsProcessor):
    """Force the meta-token at given generation steps, so decoding must use cached meta K/V."""

    def __init__(self, prompt_len: int, steps: set[int], meta_id: int) -> None:
        self.prompt_len, self.steps, self.meta_id = prompt_len, steps, meta_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.size(1) - self.prompt_len in self.steps:
            scores = torch.full_like(scores, float("-inf"))
            scores[:, self.meta_id] = 0.0
        return scores


@pytest.mark.slow
@pytest.mark.parametrize("num_beams", [1, 2])
def test_generate_with_cache_equals_without(hf_model, ids_with_meta, meta_id, num_beams):
    model = hf_model()
    ids, mask = padded_batch(ids_with_meta, meta_id)
    ids, mask = ids[:, :T_PROMPT], mask[:, :T_PROMPT]
    runs = {}
    for use_cache in (True, False):
        force = LogitsProcessorList([ForceMeta(T_PROMPT, {1, 4}, meta_id)])
        runs[use_cache] = model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=T_NEW,
            do_sample=False,
            num_beams=num_beams,
            use_cache=use_cache,
            logits_processor=force,
            pad_token_id=0,
        )
    assert runs[True].shape == (2, T_PROMPT + T_NEW)
    assert (runs[True][:, T_PROMPT:] == meta_id).sum() >= 4  # the forced meta-tokens were generated
    assert torch.equal(runs[True], runs[False])


@pytest.mark.parametrize("position_encoding", ["rope", "absolute"])
def test_left_padding_does_not_change_a_row(hf_model, ids_with_meta, meta_id, position_encoding):
    """A padded row in a batch gives the logits it gives alone (pads are masked, positions restart)."""
    model = hf_model(position_encoding=position_encoding)
    ids, mask = padded_batch(ids_with_meta, meta_id)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask, use_cache=False).logits
        for b, pad in enumerate(PAD):
            alone = model(ids[b : b + 1, pad:], use_cache=False).logits
            torch.testing.assert_close(batched[b : b + 1, pad:], alone, atol=1e-4, rtol=1e-4)
