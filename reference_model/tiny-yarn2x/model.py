"""The reference model of "Learned Meta-Tokens for Language Modeling" (arXiv 2509.16278).

A GPT-2-style decoder (pre-LN, GELU MLP, tied embeddings) with RoPE or learned
absolute positions. In every block, after causal self-attention, meta-attention
with its own Q/K/V/O lets meta-tokens attend to earlier meta-tokens only:

    softmax(Q K^T / sqrt(d) + causal + P) V,  P[i, j] = 0 iff i and j are both
    meta-tokens (j <= i), else -inf; rows of non-meta positions add nothing.

The paper materialises P densely over all T x T pairs and projects every
position. Here meta-attention gathers the meta-token rows of each sequence
(about 10% of them), projects and attends over those only, and scatters the
result back, so its cost is about 10% of an attention layer's.

Read from the parts up: config, attention, meta-attention, MLP, block, model.
Pure torch; transformers wiring lives in modeling_meta.py. This file is copied
next to saved checkpoints (trust_remote_code), so it imports only torch, the
standard library and its sibling rope.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from .rope import RopeConfig, Rotary, apply_rotary

IGNORE_INDEX = -100  # targets with this value take no loss (transformers' convention)


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50304  # GPT-2's 50257 (+ the meta-token), padded to a multiple of 64
    block_size: int = 1024  # the training window; a hard limit only for absolute positions
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers, as GPT-2
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    position_encoding: Literal["rope", "absolute"] = "rope"
    rope: RopeConfig = field(default_factory=RopeConfig)  # ignored for absolute positions
    meta_token_id: int | None = None  # meta positions are `input_ids == meta_token_id`
    meta_attention: bool = True  # ablation: off = the same model without meta-attention
    zero_meta_position: bool = False  # ablation: no positional encoding at meta-token positions

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.position_encoding not in ("rope", "absolute"):
            raise ValueError(f"position_encoding must be 'rope' or 'absolute', got {self.position_encoding!r}")
        if self.position_encoding == "rope" and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got n_embd/n_head = {self.head_dim}")
        if self.position_encoding == "absolute" and self.rope.rope_type != "default":
            raise ValueError(
                "yarn rope_parameters need position_encoding='rope'; absolute positions cannot be extended"
            )
        if self.meta_token_id is None:
            if self.meta_attention:
                raise ValueError(
                    "meta_attention is on but meta_token_id is not set: set meta_token_id to the tokenizer id "
                    "of the meta-token (the paper's _PAUSE_), or turn meta_attention off"
                )
            if self.zero_meta_position:
                raise ValueError("zero_meta_position needs meta_token_id: set it, or turn zero_meta_position off")
        elif not 0 <= self.meta_token_id < self.vocab_size:
            raise ValueError(f"meta_token_id {self.meta_token_id} is outside the vocabulary [0, {self.vocab_size})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


# The paper's model as published: GPT-2's vocabulary plus the meta-token (id 50257), about
# 152M parameters with meta-attention and 124M without. metabench ships no GPT-2 tokenizer, so
# nothing here trains it; the named, trainable sizes are metabench.train.presets.PRESETS.
PAPER_GPT2 = GPTConfig(meta_token_id=50257)


class KVCache(Protocol):
    """What the blocks need from a cache; modeling_meta.MetaCache implements it."""

    def get_seq_length(self, layer_idx: int = 0) -> int: ...

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def update_meta(
        self, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor, layer_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class MetaIndex:
    """Where the meta-tokens of each row are: slot m of row b is its m-th meta-token.

    Rows have different meta counts, so slots are padded to the batch maximum M;
    padding slots point at distinct non-meta positions and are never written back.
    """

    index: torch.Tensor  # (B, M) long: sequence position of each slot
    valid: torch.Tensor  # (B, M) bool: False at padding slots (always a suffix of the row)
    positions: torch.Tensor  # (B, M) long: position ids at those tokens, for RoPE


def gather_meta(is_meta: torch.Tensor, positions: torch.Tensor) -> MetaIndex | None:
    """MetaIndex of the True entries of is_meta (B, T), or None when there are none."""
    counts = is_meta.sum(dim=1)  # (B,)
    M = int(counts.max()) if is_meta.numel() else 0
    if M == 0:
        return None
    # a stable sort puts each row's meta positions first, in order
    index = torch.argsort((~is_meta).to(torch.int8), dim=1, stable=True)[:, :M]  # (B, M)
    valid = torch.arange(M, device=is_meta.device)[None, :] < counts[:, None]  # (B, M)
    return MetaIndex(index=index, valid=valid, positions=positions.gather(1, index))


@dataclass(frozen=True)
class BlockInputs:
    """What every block needs about this forward pass, computed once in MetaGPT."""

    rope: tuple[torch.Tensor, torch.Tensor] | None  # cos, sin (B, 1, T, hs), or None for absolute positions
    mask: torch.Tensor | None  # (B|1, 1, T, past+T) bool, True = may attend; None = plain causal
    meta: MetaIndex | None  # None: meta-attention off, or no meta-token in this chunk
    meta_rope: tuple[torch.Tensor, torch.Tensor] | None  # cos, sin (B, 1, M, hs) at the meta-tokens


def self_attention_mask(
    attention_mask: torch.Tensor | None, q_len: int, past_len: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean (B|1, 1, q_len, past_len + q_len) mask, or None when SDPA needs none.

    None means: plain causal attention (is_causal) is exact, or there is a single
    query and every key may be seen. A padding query may see itself, so that no
    softmax row is empty (its output is never used).
    """
    if attention_mask is not None and bool(attention_mask.all()):
        attention_mask = None  # no padding: take the fast path
    if attention_mask is None and (past_len == 0 or q_len == 1):
        return None
    k_len = past_len + q_len
    q_pos = torch.arange(past_len, k_len, device=device)[:, None]  # (q, 1)
    k_pos = torch.arange(k_len, device=device)[None, :]  # (1, k)
    allowed = (k_pos <= q_pos)[None]  # (1, q, k)
    if attention_mask is not None:
        allowed = (allowed & attention_mask.bool()[:, None, :]) | (k_pos == q_pos)  # (B, q, k)
    return allowed[:, None]


def meta_cache_mask(key_valid: torch.Tensor, q_len: int) -> torch.Tensor:
    """Mask (B, 1, q_len, Mk) for the last q_len meta slots attending over all Mk cached slots.

    Cached slots come earlier in time than new ones, and new slots are in time
    order, so slot order is causal order; padding slots are masked out, except
    that a padding query sees itself (its output is discarded).
    """
    k_len = key_valid.size(1)
    q_slot = torch.arange(k_len - q_len, k_len, device=key_valid.device)[:, None]  # (q, 1)
    k_slot = torch.arange(k_len, device=key_valid.device)[None, :]  # (1, Mk)
    allowed = ((k_slot <= q_slot) & key_valid[:, None, :]) | (k_slot == q_slot)  # (B, q, Mk)
    return allowed[:, None]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, inputs: BlockInputs, cache: KVCache | None = None, layer_idx: int = 0
    ) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if inputs.rope is not None:
            q, k = apply_rotary(q, *inputs.rope), apply_rotary(k, *inputs.rope)
        if cache is not None:
            k, v = cache.update(k, v, layer_idx)  # (B, nh, past+T, hs)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=inputs.mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=inputs.mask is None and T > 1,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MetaAttention(nn.Module):
    """Attention among meta-tokens only, computed on the gathered meta rows.

    Owns its pre-LN, applied to the gathered rows only (a LayerNorm is per token,
    so this equals normalising everything and then gathering). Output (B, T, C)
    is zero at every non-meta position.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.ln = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, inputs: BlockInputs, cache: KVCache | None = None, layer_idx: int = 0
    ) -> torch.Tensor:
        meta = inputs.meta
        assert meta is not None, "MetaAttention needs inputs.meta; Block skips it when there is no meta-token"
        B, T, C = x.size()
        M = meta.index.size(1)
        slots = meta.index[..., None].expand(B, M, C)  # (B, M, C)
        xm = self.ln(x.gather(1, slots))  # (B, M, C): the meta-token rows only
        q, k, v = self.c_attn(xm).split(C, dim=2)
        q = q.view(B, M, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, M, hs)
        k = k.view(B, M, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, M, hs)
        v = v.view(B, M, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, M, hs)
        if inputs.meta_rope is not None:
            # the tokens' original positions, as the paper's dense mask implies
            q, k = apply_rotary(q, *inputs.meta_rope), apply_rotary(k, *inputs.meta_rope)
        dropout_p = self.dropout if self.training else 0.0
        mask = None
        if cache is not None:
            k, v, key_valid = cache.update_meta(k, v, meta.valid, layer_idx)  # (B, nh, Mk, hs), (B, Mk)
            if k.size(2) > M:  # earlier meta-tokens are cached: padding slots may sit anywhere
                mask = meta_cache_mask(key_valid, M)
        # without cached slots, valid slots are a prefix of every row, so causal attention
        # over slots is exact for them (padding rows attend to padding and are discarded)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=mask is None
        )  # (B, nh, M, hs)
        y = y.transpose(1, 2).contiguous().view(B, M, C)
        y = self.resid_dropout(self.c_proj(y)) * meta.valid[..., None].to(y.dtype)  # padding slots -> 0
        # slots index distinct positions, and padding slots carry zeros, so a scatter is exact
        return x.new_zeros(x.shape, dtype=y.dtype).scatter(1, slots, y)  # (B, T, C); y may be bf16 under autocast


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.meta_attn = MetaAttention(config) if config.meta_attention else None
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, inputs: BlockInputs, cache: KVCache | None = None, layer_idx: int = 0
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), inputs, cache, layer_idx)
        if self.meta_attn is not None and inputs.meta is not None:
            x = x + self.meta_attn(x, inputs, cache, layer_idx)
        return x + self.mlp(self.ln_2(x))


def init_module(module: nn.Module, config: GPTConfig) -> None:
    """GPT-2 initialisation of one module (children first, as nn.Module.apply and transformers do)."""
    std = config.initializer_range
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, Rotary):
        module.reset_parameters()
    if isinstance(module, (CausalSelfAttention, MetaAttention, MLP)):
        # GPT-2: scale residual projections by 1/sqrt(number of residual branches)
        branches = (3 if config.meta_attention else 2) * config.n_layer
        nn.init.normal_(module.c_proj.weight, mean=0.0, std=std / math.sqrt(branches))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, meta_token_id: int | None) -> torch.Tensor:
    """Mean cross-entropy of logits (B, T, V) against aligned next tokens (B, T).

    Targets equal to IGNORE_INDEX take no loss, and neither does any target that
    is the meta-token: the paper takes no loss on meta-token positions.
    """
    if meta_token_id is not None:
        targets = targets.masked_fill(targets == meta_token_id, IGNORE_INDEX)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX)


class MetaGPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.position_encoding == "absolute" else None
        self.rotary = Rotary(config.head_dim, config.rope) if config.position_encoding == "rope" else None
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (GPT-2)
        self.apply(lambda module: init_module(module, config))

    def num_params(self) -> int:
        """Parameters, counting the tied embedding once."""
        return sum(p.numel() for p in self.parameters())

    def is_meta(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """(B, T) bool: which tokens are meta-tokens (never padding); None without a meta_token_id."""
        if self.config.meta_token_id is None:
            return None
        is_meta = idx == self.config.meta_token_id
        if attention_mask is not None:
            is_meta = is_meta & attention_mask[:, -idx.size(1) :].bool()
        return is_meta

    def hidden_states(
        self,
        idx: torch.Tensor,
        positions: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Final hidden states (B, T, C) for token ids idx (B, T).

        positions (B, T): position ids; by default counted from the first
        unpadded token. attention_mask (B, past+T): 1 for tokens, 0 for padding.
        cache: past K/V, updated in place.
        """
        B, T = idx.size()
        past = cache.get_seq_length() if cache is not None else 0
        if attention_mask is not None and attention_mask.shape != (B, past + T):
            raise ValueError(
                f"attention_mask must be (batch, past + new tokens) = {(B, past + T)}, "
                f"got {tuple(attention_mask.shape)}"
            )
        if positions is None:
            if attention_mask is None:
                positions = torch.arange(past, past + T, device=idx.device).expand(B, T)
            else:
                positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
        is_meta = self.is_meta(idx, attention_mask)  # (B, T) or None

        x = self.wte(idx)  # (B, T, C)
        rope = meta_rope = None
        if self.wpe is not None:
            if int(positions.max()) >= self.config.block_size:
                raise ValueError(
                    f"position {int(positions.max())} is past the learned absolute positions "
                    f"(block_size {self.config.block_size}); use a RoPE model to run longer inputs"
                )
            pos_emb = self.wpe(positions)  # (B, T, C)
            if self.config.zero_meta_position and is_meta is not None:
                pos_emb = pos_emb.masked_fill(is_meta[..., None], 0.0)  # ablation: no position at meta-tokens
            x = x + pos_emb
        elif self.config.zero_meta_position and is_meta is not None:
            positions = positions.masked_fill(is_meta, 0)  # ablation: angle 0, the identity rotation
        meta = gather_meta(is_meta, positions) if self.config.meta_attention and is_meta is not None else None
        if self.rotary is not None:
            rope = self.rotary(positions, x.dtype)
            if meta is not None:
                meta_rope = self.rotary(meta.positions, x.dtype)
        inputs = BlockInputs(
            rope=rope, mask=self_attention_mask(attention_mask, T, past, idx.device), meta=meta, meta_rope=meta_rope
        )

        x = self.drop(x)
        for layer_idx, block in enumerate(self.h):
            x = block(x, inputs, cache, layer_idx)
        return self.ln_f(x)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V), and the loss when targets (B, T), the next tokens, are given."""
        logits = self.lm_head(self.hidden_states(idx))
        loss = lm_loss(logits, targets, self.config.meta_token_id) if targets is not None else None
        return logits, loss
