"""The reference meta-token model (model.py) as a vLLM model class.

vLLM loads MetaForCausalLM checkpoints with this class once the plugin in
vllm_plugin.py has registered it (metabench's `vllm.general_plugins` entry
point does that in every vLLM process). Weight names are the checkpoint's own
("model.h.0.attn.c_attn.weight", ...); projections are vLLM's parallel layers,
so tensor parallelism is not ruled out (it is only exercised on CPU with TP=1).

Meta-attention in paged attention. vLLM's kernels take no custom mask, only
causal attention over a sequence's KV cache. The meta -> meta restriction of
model.py (P[i, j] = 0 iff i and j are both meta-tokens, else -inf) becomes one
more dimension of q and k, so the mask rides inside q.k:

    q' = [q, 1, 0...]         k' = [k, 0 if token j is meta else -BIG, 0...]
    v' = [v, 0, 0...]         scale = 1/sqrt(hs), the model's own

q'.k' = q.k at meta keys and q.k - BIG at the others; with scale * BIG >= 625
(1250 at hs 64) their softmax weight underflows to exactly 0 in float32 (and bf16/fp16
accumulate in float32), so a meta query attends over earlier meta keys only,
exactly. A meta query always sees itself, so its row is never empty. Outputs at
non-meta query positions (attending over garbage) are replaced by 0, as model.py
scatters zeros there. The padded head size is the smallest size the attention
kernels take that exceeds hs (64 -> 80 on CPU); the padding is zeros, so it
changes nothing but cost.

Cost, paid for the kernel's lack of masks: each block runs a second full
causal attention kernel over all tokens at head size hs+pad (model.py attends
over the ~10% meta rows only), and keeps a KV cache (hs+pad)/hs as large as the
self-attention's. LN and the Q/K/V/O projections run on the meta rows only
(gathered, as model.py), except while a CUDA graph is captured, which needs
static shapes: then every row is projected and non-meta rows are discarded.
Measured by benchmarks/vllm_vs_hf.py --meta-cost on CPU (4 x 256 model, smoke
suite at 512-1024 tokens, 2 shared cores): 1.2-1.5x the generate time of the
same model with meta-attention off (the paper's dense mask: 1.11x).

RoPE: cos/sin tables come from rope.rope_frequencies (the single source of
truth for default RoPE and YaRN, including the attention factor folded into
cos and sin), rotate-half convention. Meta-attention rotates by the tokens'
original positions, as model.py; with zero_meta_position (the ablation) both
attentions use position 0 at meta-tokens, as model.py does. Absolute positions
(position_encoding "absolute") are supported too.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from vllm.config import CacheConfig, VllmConfig
from vllm.distributed import get_tensor_model_parallel_world_size
from vllm.model_executor.layers.attention import Attention
from vllm.model_executor.layers.linear import ColumnParallelLinear, QKVParallelLinear, RowParallelLinear
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
from vllm.model_executor.model_loader.weight_utils import default_weight_loader
from vllm.model_executor.models.utils import maybe_prefix
from vllm.sequence import IntermediateTensors

from .model import GPTConfig
from .rope import RopeConfig, rope_frequencies

# Head sizes every vLLM attention backend we run on takes (the CPU kernels list
# these and more; GPU kernels take any multiple of 8 up to 256).
CPU_FALLBACK_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
# scale * MASK_BIAS must make exp() underflow to exactly 0: 1e4 / sqrt(hs) >= 625 for hs <= 256
MASK_BIAS = 1.0e4


def supported_head_sizes() -> tuple[int, ...]:
    """Head sizes the attention kernels of this platform accept (CPU: asked from the backend)."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        return tuple(sorted(CPUAttentionBackend.get_supported_head_sizes()))
    return tuple(range(8, 257, 8))


def gpt_config_of(hf_config: object) -> GPTConfig:
    """The GPTConfig of a MetaConfig, with errors that say which config.json field to change."""
    to_gpt = getattr(hf_config, "to_gpt_config", None)
    if to_gpt is None:
        raise ValueError(
            f"{type(hf_config).__name__} is not a MetaConfig: the checkpoint's config.json must have "
            "model_type 'metabench_meta' (save it with MetaForCausalLM.save_pretrained)"
        )
    try:
        config: GPTConfig = to_gpt()
    except ValueError as err:
        raise ValueError(f"cannot serve this checkpoint in vLLM: config.json is invalid: {err}") from err
    if config.meta_attention and config.meta_token_id is None:  # GPTConfig checks this; kept explicit
        raise ValueError("config.json has meta_attention on but no meta_token_id: set meta_token_id")
    sizes = supported_head_sizes()
    hs = config.head_dim
    if hs not in sizes:
        # head counts that give a supported head size, nearest to the checkpoint's first
        fits = sorted((n for n in range(1, config.n_embd + 1) if config.n_embd % n == 0 and config.n_embd // n in sizes),
                      key=lambda n: (abs(n - config.n_head), n))[:3]
        hint = (
            "retrain it with num_attention_heads "
            + " or ".join(f"{n} (head size {config.n_embd // n})" for n in fits)
            if fits
            else f"retrain it with hidden_size / num_attention_heads among {list(sizes)}"
        )
        raise ValueError(
            f"vLLM's attention kernels on this platform do not take head size {hs} "
            f"(hidden_size {config.n_embd} / num_attention_heads {config.n_head}); they take {list(sizes)}. "
            f"(the weights do not fix the head count, but the trained function does): {hint}"
        )
    return config


def meta_head_size(hs: int, sizes: tuple[int, ...]) -> int:
    """Smallest supported head size with room for hs dims plus the mask dimension."""
    bigger = [s for s in sizes if s > hs]
    if not bigger:
        raise ValueError(
            f"meta-attention needs a head size above {hs} for its mask dimension, and the attention kernels "
            f"take at most {max(sizes)}: use more heads (smaller head_dim)"
        )
    return bigger[0]


class Rotary(nn.Module):
    """cos/sin tables (max_position, hs/2) from rope_frequencies; applies rotate-half RoPE to (T, nh*hs)."""

    def __init__(self, head_dim: int, rope: RopeConfig, max_position: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        inv_freq, attention_factor = rope_frequencies(head_dim, rope)  # (hs/2,) float32
        # the same float32 product model.py's Rotary forms per position, tabulated once
        angles = torch.arange(max_position, dtype=torch.float32)[:, None] * inv_freq[None, :]
        self.cos: torch.Tensor
        self.sin: torch.Tensor
        self.register_buffer("cos", angles.cos() * attention_factor, persistent=False)
        self.register_buffer("sin", angles.sin() * attention_factor, persistent=False)

    def rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        T = x.size(0)
        x = x.view(T, -1, self.head_dim)  # (T, nh, hs)
        cos = torch.cat((self.cos[positions],) * 2, dim=-1)[:, None].to(x.dtype)  # (T, 1, hs)
        sin = torch.cat((self.sin[positions],) * 2, dim=-1)[:, None].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return (x * cos + torch.cat((-x2, x1), dim=-1) * sin).view(T, -1)


class SelfAttention(nn.Module):
    """Causal self-attention: q, k, v from one fused projection, RoPE, vLLM's paged attention."""

    def __init__(self, config: GPTConfig, cache_config: CacheConfig | None, prefix: str, head_size: int = 0) -> None:
        super().__init__()
        tp = get_tensor_model_parallel_world_size()
        if config.n_head % tp:
            raise ValueError(f"num_attention_heads ({config.n_head}) must be a multiple of tensor_parallel_size ({tp})")
        self.head_dim, self.n_head = config.head_dim, config.n_head // tp  # heads on this rank
        self.c_attn = QKVParallelLinear(
            config.n_embd, self.head_dim, config.n_head, bias=config.bias, prefix=f"{prefix}.c_attn"
        )
        self.c_proj = RowParallelLinear(config.n_embd, config.n_embd, bias=config.bias, prefix=f"{prefix}.c_proj")
        # the kernel's head size may exceed head_dim (meta-attention); the scale is always the model's 1/sqrt(hs)
        self.attn = Attention(
            self.n_head, head_size or self.head_dim, self.head_dim**-0.5, cache_config=cache_config,
            prefix=f"{prefix}.attn",
        )

    def qkv(self, x: torch.Tensor, rotary: Rotary | None, positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        qkv, _ = self.c_attn(x)
        q, k, v = qkv.chunk(3, dim=-1)  # (T, nh*hs) each
        if rotary is not None:
            q, k = rotary.rotate(q, positions), rotary.rotate(k, positions)
        return q, k, v

    def forward(self, x: torch.Tensor, rotary: Rotary | None, positions: torch.Tensor) -> torch.Tensor:
        y = self.attn(*self.qkv(x, rotary, positions))  # (T, nh*hs)
        out, _ = self.c_proj(y)
        return out


class MetaAttention(SelfAttention):
    """Meta -> meta causal attention through vLLM's paged causal kernel (the mask dimension above).

    Owns its pre-LN, as model.py's MetaAttention. Output (T, C) is zero at non-meta tokens.
    """

    def __init__(self, config: GPTConfig, cache_config: CacheConfig | None, prefix: str, padded: int) -> None:
        super().__init__(config, cache_config, prefix, head_size=padded)
        self.padded = padded
        self.ln = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, rotary: Rotary | None, positions: torch.Tensor, is_meta: torch.Tensor
    ) -> torch.Tensor:
        if x.is_cuda and torch.cuda.is_current_stream_capturing():
            return self.forward_all_rows(x, rotary, positions, is_meta)  # a CUDA graph needs static shapes
        return self.forward_meta_rows(x, rotary, positions, is_meta)

    def forward_meta_rows(
        self, x: torch.Tensor, rotary: Rotary | None, positions: torch.Tensor, is_meta: torch.Tensor
    ) -> torch.Tensor:
        """LN and Q/K/V/O projections of the meta rows only (as model.py); the kernel still sees every token."""
        T, hs, nh = x.size(0), self.head_dim, self.n_head
        rows = is_meta.nonzero().squeeze(1)  # (M,) positions of meta-tokens in this batch
        q = x.new_zeros(T, nh, self.padded)
        k = x.new_zeros(T, nh, self.padded)
        v = x.new_zeros(T, nh, self.padded)
        q[..., hs] = 1.0  # every query reads the mask dimension...
        k[..., hs] = -MASK_BIAS  # ...which is -BIG at every key but the meta ones, set next
        if rows.numel():
            qm, km, vm = self.qkv(self.ln(x[rows]), rotary, positions[rows])  # (M, nh*hs); original positions
            q[rows, :, :hs] = qm.view(-1, nh, hs)
            k[rows, :, :hs] = km.view(-1, nh, hs)
            k[rows, :, hs] = 0.0
            v[rows, :, :hs] = vm.view(-1, nh, hs)
        y = self.attn(q.view(T, -1), k.view(T, -1), v.view(T, -1)).view(T, nh, self.padded)  # KV of all T cached
        out = torch.zeros_like(x)
        if rows.numel():
            # non-meta rows attended over masked keys only: they stay zero, as model.py scatters
            out[rows], _ = self.c_proj(y[rows, :, :hs].reshape(-1, nh * hs))
        return out

    def forward_all_rows(
        self, x: torch.Tensor, rotary: Rotary | None, positions: torch.Tensor, is_meta: torch.Tensor
    ) -> torch.Tensor:
        """The same with static shapes: every row projected, non-meta rows discarded."""
        T, hs, nh, pad = x.size(0), self.head_dim, self.n_head, self.padded - self.head_dim
        q, k, v = (F.pad(t.view(T, nh, hs), (0, pad)) for t in self.qkv(self.ln(x), rotary, positions))  # (T, nh, P)
        q[..., hs] = 1.0
        k[..., hs] = torch.where(is_meta, 0.0, -MASK_BIAS)[:, None].to(k.dtype)
        y = self.attn(q.view(T, -1), k.view(T, -1), v.view(T, -1)).view(T, nh, self.padded)
        out, _ = self.c_proj(y[..., :hs].reshape(T, nh * hs))
        return torch.where(is_meta[:, None], out, torch.zeros_like(out))  # where, not *, so no 0 * inf


class MLP(nn.Module):
    def __init__(self, config: GPTConfig, prefix: str) -> None:
        super().__init__()
        self.c_fc = ColumnParallelLinear(config.n_embd, 4 * config.n_embd, bias=config.bias, prefix=f"{prefix}.c_fc")
        self.gelu = nn.GELU()  # exact erf GELU, as model.py
        self.c_proj = RowParallelLinear(4 * config.n_embd, config.n_embd, bias=config.bias, prefix=f"{prefix}.c_proj")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.c_fc(x)
        out, _ = self.c_proj(self.gelu(h))
        return out


class Block(nn.Module):
    def __init__(self, config: GPTConfig, cache_config: CacheConfig | None, prefix: str, padded: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = SelfAttention(config, cache_config, f"{prefix}.attn")
        self.meta_attn = (
            MetaAttention(config, cache_config, f"{prefix}.meta_attn", padded) if config.meta_attention else None
        )
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config, f"{prefix}.mlp")

    def forward(
        self, x: torch.Tensor, rotary: Rotary | None, positions: torch.Tensor, is_meta: torch.Tensor | None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rotary, positions)
        if self.meta_attn is not None:
            assert is_meta is not None
            x = x + self.meta_attn(x, rotary, positions, is_meta)
        return x + self.mlp(self.ln_2(x))


class MetaModel(nn.Module):
    """model.py's MetaGPT without lm_head, on vLLM's flattened (T,) token batches."""

    def __init__(self, config: GPTConfig, vllm_config: VllmConfig, prefix: str) -> None:
        super().__init__()
        self.config = config
        cache_config = vllm_config.cache_config
        padded = meta_head_size(config.head_dim, supported_head_sizes()) if config.meta_attention else 0
        max_model_len = vllm_config.model_config.max_model_len
        if config.position_encoding == "absolute" and max_model_len > config.block_size:
            raise ValueError(
                f"max_model_len {max_model_len} is past the learned absolute positions (max_position_embeddings "
                f"{config.block_size}): serve at most {config.block_size} tokens, or use a RoPE model"
            )
        max_position = max(config.block_size, max_model_len)
        self.wte = VocabParallelEmbedding(config.vocab_size, config.n_embd, prefix=f"{prefix}.wte")
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.position_encoding == "absolute" else None
        self.rotary = Rotary(config.head_dim, config.rope, max_position) if config.position_encoding == "rope" else None
        self.h = nn.ModuleList(
            [Block(config, cache_config, f"{prefix}.h.{i}", padded) for i in range(config.n_layer)]
        )
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        is_meta = input_ids == cfg.meta_token_id if cfg.meta_token_id is not None else None  # (T,)
        if cfg.zero_meta_position and is_meta is not None:
            positions = positions.masked_fill(is_meta, 0)  # ablation: no position at meta-tokens
        x = self.wte(input_ids)  # (T, C)
        if self.wpe is not None:
            x = x + self.wpe(positions)  # max_model_len <= block_size, checked above
        for block in self.h:
            x = block(x, self.rotary, positions, is_meta)
        return self.ln_f(x)


class MetaForCausalLMVLLM(nn.Module):
    """vLLM's causal LM for MetaForCausalLM checkpoints (config.json architectures: ["MetaForCausalLM"])."""

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        hf_config = vllm_config.model_config.hf_config
        config = gpt_config_of(hf_config)
        self.config = hf_config
        self.gpt_config = config
        self.model = MetaModel(config, vllm_config, prefix=maybe_prefix(prefix, "model"))
        # tied to the token embedding, as in the checkpoint (model.lm_head.weight is model.wte.weight)
        self.lm_head = ParallelLMHead(
            config.vocab_size, config.n_embd, prefix=maybe_prefix(prefix, "lm_head")
        ).tie_weights(self.model.wte)
        self.logits_processor = LogitsProcessor(config.vocab_size)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.wte(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if input_ids is None or inputs_embeds is not None:
            raise ValueError("the meta-token model reads meta positions from token ids: do not enable prompt embeds")
        if intermediate_tensors is not None:
            raise ValueError("the meta-token model does not support pipeline parallelism; use tensor parallelism")
        return self.model(input_ids, positions)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.logits_processor(self.lm_head, hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Load the checkpoint's tensors by their own names; every parameter must be found once."""
        params = dict(self.named_parameters())
        loaded: set[str] = set()
        for name, tensor in weights:
            if name == "model.lm_head.weight":  # tied: the same tensor as model.wte.weight
                continue
            if name not in params:
                raise ValueError(
                    f"checkpoint tensor {name!r} is not part of this model; config.json must describe the model "
                    "the weights came from (meta_attention, position_encoding, layers)"
                )
            param = params[name]
            getattr(param, "weight_loader", default_weight_loader)(param, tensor)
            loaded.add(name)
        missing = sorted(set(params) - loaded - {"lm_head.weight"})
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} tensors of this model: {missing[:4]}")
        return loaded | {"lm_head.weight"}
