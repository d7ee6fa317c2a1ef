"""The training streams: meta-token counts and places, loss weights, purity, DDP row split."""

from __future__ import annotations

import pytest
import torch

from metabench.generate import Options, make_sample
from metabench.lengths import Length
from metabench.model.configuration_meta import MetaConfig
from metabench.model.model import GPTConfig, lm_loss
from metabench.model.modeling_meta import MetaForCausalLM
from metabench.train.data import TRAIN_SEED_BASE, Stream, entry_for

META, EOS = 1, 0


def stream(tok, **kw) -> Stream:
    args = {"tasks": ("list_recall/easy", "copy/short", "needle/single"), "curriculum": (0.5, 1.0)} | kw
    return Stream(tok, 256, seed=3, **args)


def test_bundled_tokenizer_ids(ref_tok):
    s = stream(ref_tok)
    assert (s.meta_id, s.eos_id) == (META, EOS)


def test_pretrain_row_has_k_n_meta_tokens_without_loss(ref_tok):
    s = stream(ref_tok, meta_fraction=0.1)
    ids, w = s.pretrain_row(step=5, row=2)
    assert len(ids) == len(w) == 256
    assert ids.count(META) == round(0.1 * 256)  # M = k * n
    assert w[0] == 0.0
    assert all(w[t] == 0.0 for t in range(1, 256) if ids[t] == META)
    assert all(w[t] == 1.0 for t in range(1, 256) if ids[t] != META)
    # the text between meta-tokens is the procedural corpus, in order
    text = ref_tok.backend.decode([i for i in ids if i != META])
    assert text.count(".") >= 5 and "<|meta|>" not in text


def test_induction_row_is_a_span_said_twice(ref_tok):
    s = stream(ref_tok, meta_fraction=0.1)
    lengths = set()
    for row in range(20):
        ids, w = s.induction_row(step=2, row=row)
        assert len(ids) == len(w) <= 256
        assert META not in ids  # random meta-tokens stop induction forming (see induction_row)
        half = len(ids) // 2
        assert len(ids) % 2 == 0 and ids[:half] == ids[half:]  # the second saying copies the first
        assert w[0] == 0.0 and all(x == 1.0 for x in w[1:])
        words = ref_tok.backend.decode(ids[:half]).split()
        assert 4 <= len(words) <= 24
        lengths.add(len(words))
    assert len(lengths) > 5  # varied, so a fixed look-back offset cannot stand in for matching content
    assert s.induction_row(2, 0) == stream(ref_tok).induction_row(2, 0) != s.induction_row(3, 0)
    batch, width = s.rows("induction", 2, range(4))
    assert width == max(len(s.induction_row(2, r)[0]) for r in range(4)) == batch.ids.shape[1]


def test_mixed_in_induction_rows_are_their_own_draws(ref_tok):
    s = stream(ref_tok)
    for phase in ("pretrain", "finetune"):
        batch = s.mix_rows(phase, 5, range(3))
        assert batch.ids.shape[0] == 3 and META not in batch.ids.tolist()
        for r in range(3):
            ids, _ = s.induction_row(5, r, key=f"mix/{phase}")
            half = len(ids) // 2
            assert batch.ids[r, : len(ids)].tolist() == ids and ids[:half] == ids[half:]
            # loss only where copying predicts: the second saying after its first token; none on padding
            w = batch.weights[r].tolist()
            assert w[: half + 1] == [0.0] * (half + 1) and w[half + 1 : len(ids)] == [1.0] * (half - 1)
            assert sum(w[len(ids):]) == 0
            assert ids != s.induction_row(5, r)[0]  # not a repeat of the induction phase's rows
    assert s.mix_rows("pretrain", 5, range(3)).ids.tolist() != s.mix_rows("finetune", 5, range(3)).ids.tolist()
    assert s.mix_rows("finetune", 5, [1]).ids.tolist() == stream(ref_tok).mix_rows("finetune", 5, [1]).ids.tolist()


def test_an_induction_row_longer_than_the_block_is_an_error_not_cut(ref_tok):
    s = Stream(ref_tok, 16, seed=3)
    with pytest.raises(ValueError, match="does not fit the 16-token block"):
        for row in range(50):  # spans of 4-24 words: some said twice exceed 16 tokens
            s.induction_row(step=0, row=row)


def test_rows_are_pure_and_distinct(ref_tok):
    a, b = stream(ref_tok), stream(ref_tok)
    assert a.pretrain_row(7, 1) == b.pretrain_row(7, 1)
    assert a.finetune_row(7, 1, 128) == b.finetune_row(7, 1, 128)
    assert a.pretrain_row(7, 1) != a.pretrain_row(7, 2) != a.pretrain_row(8, 1)
    meta_at = [[t for t, i in enumerate(a.pretrain_row(0, r)[0]) if i == META] for r in range(3)]
    assert meta_at[0] != meta_at[1] != meta_at[2]  # uniformly random positions, not a fixed pattern
    assert stream(ref_tok).pretrain_row(7, 1) != Stream(ref_tok, 256, seed=4).pretrain_row(7, 1)


def test_finetune_row_is_the_runner_sample_plus_answer(ref_tok):
    s = stream(ref_tok, prompt_loss_weight=0.25)
    ids, w = s.finetune_row(step=3, row=0, length=256)
    eos_at = len(ids) - 1
    assert ids[eos_at] == EOS and len(ids) <= 256
    # rebuild the sample the row came from: same entry, length and index -> same prompt
    answer_len = sum(1 for x in w if x == 1.0)
    prompt_ids = ids[: len(ids) - answer_len]
    prompt = ref_tok.backend.decode(prompt_ids, skip_special_tokens=False)
    assert prompt.endswith("Answer:")
    answer = ref_tok.backend.decode(ids[len(prompt_ids) : eos_at])
    assert answer.startswith(" ") and answer.strip() in prompt  # list_recall/copy/needle answers are in the text
    assert all(x in (0.0, 0.25) for x in w[: len(prompt_ids)])
    assert all(w[t] == 0.0 for t in range(len(ids)) if ids[t] == META)


def test_finetune_meta_tokens_sit_at_the_task_positions(ref_tok):
    entry = entry_for("list_recall/default")
    opts = Options(context=256, marker="<|meta|>")
    sample = make_sample(entry, Length("256", 256), 11, TRAIN_SEED_BASE, ref_tok, opts)
    ids = ref_tok.encode(sample.prompt)
    assert sample.marker_token_positions and [ids[p] for p in sample.marker_token_positions] == [META]
    assert ids.count(META) == 1


def test_curriculum_increases_and_skips_lengths_a_task_cannot_fit(ref_tok):
    s = Stream(ref_tok, 256, 0, tasks=("needle/multiquery", "parity/default"), curriculum=(0.5, 0.75, 1.0))
    assert [s.stage_length(k, 30) for k in (0, 9, 10, 19, 20, 29)] == [128, 128, 192, 192, 256, 256]
    assert s.feasible == {"needle/multiquery": (192, 256), "parity/default": (128, 192, 256)}
    batch, width = s.rows("finetune", 0, range(8), finetune_steps=30)
    assert width >= 128 and batch.ids.shape == (8, width)
    multi = [r for r in range(8) if "multiquery" in ref_tok.backend.decode(batch.ids[r].tolist()) or False]
    assert all(batch.weights[r].gt(0).sum() > 0 for r in range(8))
    assert multi == [] or width == 192


def test_an_entry_listed_n_times_is_drawn_n_times_as_often(ref_tok):
    s = Stream(ref_tok, 256, 0, tasks=("list_recall/easy",) * 3 + ("copy/short",), curriculum=(1.0,))
    texts = [ref_tok.backend.decode(s.finetune_row(step, 0, 256)[0]) for step in range(200)]
    lists = sum("named lists" in t for t in texts)
    assert 130 <= lists <= 170  # 3/4 of 200 rows; binomial sd 6
    assert all(("named lists" in t) != ("<<<" in t) for t in texts)  # every row is one of the two


def test_the_last_anneal_steps_draw_from_the_anneal_mix_and_earlier_rows_are_unchanged(ref_tok):
    plain = Stream(ref_tok, 256, 0, tasks=("copy/short", "needle/single"), curriculum=(1.0,))
    annealed = Stream(ref_tok, 256, 0, tasks=("copy/short", "needle/single"), curriculum=(1.0,),
                      anneal_steps=4, anneal_tasks=("list_recall/easy",))
    for step in range(6):  # steps 0-5 of 10: before the anneal steps, the same rows
        assert torch.equal(annealed.rows("finetune", step, range(4), 10)[0].ids,
                           plain.rows("finetune", step, range(4), 10)[0].ids)
    for step in range(6, 10):
        batch, _ = annealed.rows("finetune", step, range(4), 10)
        assert all("named lists" in ref_tok.backend.decode(row.tolist()) for row in batch.ids)
    assert set(annealed.feasible) == {"copy/short", "needle/single", "list_recall/easy"}


def test_a_task_that_never_fits_is_an_error(ref_tok):
    import pytest

    s = Stream(ref_tok, 64, 0, tasks=("needle/multiquery",), curriculum=(1.0,))
    with pytest.raises(ValueError, match="does not fit in any curriculum length"):
        s.feasible


def test_process_rows_partition_the_global_batch(ref_tok):
    s = stream(ref_tok)
    whole, _ = s.rows("finetune", 4, range(6), finetune_steps=10)
    for rank in range(2):
        part, _ = s.rows("finetune", 4, range(rank, 6, 2), finetune_steps=10)
        assert torch.equal(part.ids, whole.ids[rank::2])


def test_the_model_takes_no_loss_on_meta_targets():
    """The paper's "no loss on meta-token positions": lm_loss and MetaForCausalLM drop meta targets."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, n_embd=16, meta_token_id=5)
    model = MetaForCausalLM(MetaConfig.from_gpt_config(cfg)).eval()
    ids = torch.randint(6, 64, (2, 16))
    ids[0, 4] = ids[1, 9] = ids[1, 10] = 5
    logits = model(input_ids=ids, use_cache=False).logits
    keep = ids[:, 1:] != 5
    by_hand = torch.nn.functional.cross_entropy(logits[:, :-1][keep], ids[:, 1:][keep])
    assert torch.allclose(model(input_ids=ids, labels=ids, use_cache=False).loss, by_hand, atol=1e-6)
    assert torch.allclose(lm_loss(logits[:, :-1], ids[:, 1:], 5), by_hand, atol=1e-6)
