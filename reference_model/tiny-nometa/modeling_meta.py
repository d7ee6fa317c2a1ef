"""transformers wiring of the reference meta-token model: cache, causal LM, loading.

`MetaForCausalLM` wraps model.py's `MetaGPT` (weights under "model."), so
`generate()`, `save_pretrained` and `AutoModelForCausalLM` work. Saved
checkpoints carry an `auto_map` and this file's sources, so
`from_pretrained(dir, trust_remote_code=True)` works where metabench is not
installed.

KV cache. `MetaCache` is a transformers `Cache` of 2 x n_layer layers: layers
0..n_layer-1 hold self-attention K/V (B, nh, T, hs) like any DynamicCache;
layer n_layer + i holds block i's meta-attention K/V (B, nh, M, hs) of the
meta-tokens seen so far, plus which slots are real (B, M) (rows gain
meta-tokens at different steps, so a step where some row has one adds a slot
to every row, marked invalid where that row had none). The model creates it on
the first forward with use_cache, and generate() threads it through.
Greedy, sampling and beam search work; cropping (assisted decoding) does not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

from .checkpoint import check_checkpoint
from .configuration_meta import MetaConfig
from .model import IGNORE_INDEX, MetaGPT, init_module, lm_loss

# transformers renamed past_key_values to cache (inputs and outputs) in 5.2x; speak whichever is installed
CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


class MetaLayer(DynamicLayer):
    """One block's meta-attention K/V (B, nh, M, hs) and slot validity (B, M)."""

    is_croppable = False  # slots are not tokens, so "drop the last n tokens" has no slot meaning

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.valid: torch.Tensor | None = None

    def update_meta(
        self, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keys, values = self.update(k, v)  # concatenated along the slot axis
        self.valid = valid if self.valid is None else torch.cat([self.valid, valid], dim=1)
        return keys, values, self.valid

    def reset(self) -> None:
        super().reset()
        self.valid = None

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("the meta-attention cache cannot be cropped; generate without assisted decoding")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        if self.valid is not None:
            self.valid = self.valid.index_select(0, beam_idx.to(self.valid.device))

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        if self.valid is not None:
            self.valid = self.valid.repeat_interleave(repeats, dim=0)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        if self.valid is not None:
            self.valid = self.valid[indices, ...]


class MetaCache(Cache):
    """Self-attention layers 0..n_layer-1, then one MetaLayer per block."""

    def __init__(self, n_layer: int) -> None:
        layers: list[Any] = [DynamicLayer() for _ in range(n_layer)] + [MetaLayer() for _ in range(n_layer)]
        super().__init__(layers=layers)
        self.n_layer = n_layer

    def update_meta(
        self, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor, layer_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.layers[self.n_layer + layer_idx].update_meta(k, v, valid)


class MetaPreTrainedModel(PreTrainedModel):
    config_class = MetaConfig
    base_model_prefix = "model"
    _no_split_modules = ["Block"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        init_module(module, self.model.config)  # the same GPT-2 init as a bare MetaGPT


class MetaForCausalLM(MetaPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"model.lm_head.weight": "model.wte.weight"}

    def __init__(self, config: MetaConfig) -> None:
        super().__init__(config)
        self.model = MetaGPT(config.to_gpt_config())
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # meta-attention needs MetaCache, which forward() creates

    def get_input_embeddings(self) -> nn.Module:
        return self.model.wte

    def get_output_embeddings(self) -> nn.Module:
        return self.model.lm_head

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """labels (B, T) follow transformers: labels = input_ids, shifted here; -100 is ignored.

        No loss is taken where the input is the meta-token, nor where the target is.
        logits_to_keep > 0 computes logits for the last that many positions only.
        use_cache defaults to config.use_cache in eval mode and to False in training.
        """
        if input_ids is None or inputs_embeds is not None:
            raise ValueError("MetaForCausalLM needs input_ids (meta positions are read from them), not inputs_embeds")
        unsupported = sorted(k for k, v in kwargs.items() if v and k in ("output_attentions", "output_hidden_states"))
        if unsupported:
            raise ValueError(f"MetaForCausalLM does not return {unsupported}; call without them")
        if use_cache is None:  # a cache only costs copies in training
            use_cache = self.config.use_cache and not self.training
        cache = cache if cache is not None else past_key_values  # transformers < 5.20 calls it past_key_values
        if cache is not None and not isinstance(cache, MetaCache):
            if cache.get_seq_length() > 0:
                raise ValueError(f"MetaForCausalLM needs a MetaCache, got a filled {type(cache).__name__}")
            cache = None  # an empty cache someone else made: use ours
        if use_cache and cache is None:
            cache = MetaCache(self.config.num_hidden_layers)

        hidden = self.model.hidden_states(
            input_ids, positions=position_ids, attention_mask=attention_mask, cache=cache if use_cache else None
        )  # (B, T, C)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.model.lm_head(hidden)  # (B, T', V)

        loss = None
        if labels is not None:
            if logits_to_keep:
                raise ValueError("labels need logits at every position; do not pass logits_to_keep with labels")
            is_meta = self.model.is_meta(input_ids)
            if is_meta is not None:
                labels = labels.masked_fill(is_meta, IGNORE_INDEX)
            loss = lm_loss(logits[:, :-1], labels[:, 1:], self.config.meta_token_id)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_FIELD: cache if use_cache else None})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any):
        """transformers' from_pretrained, after check_checkpoint on a local directory (loud errors)."""
        directory = Path(pretrained_model_name_or_path) / kwargs.get("subfolder", "")
        if directory.is_dir():
            config = kwargs.get("config")
            if not isinstance(config, MetaConfig):
                config = MetaConfig.from_pretrained(directory)
            check_checkpoint(directory, expected_shapes(config), frozenset(cls._tied_weights_keys))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)


def expected_shapes(config: MetaConfig) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of MetaForCausalLM for this config, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = MetaGPT(config.to_gpt_config())
    return {f"model.{name}": tuple(t.shape) for name, t in model.state_dict().items()}


# save_pretrained writes an auto_map entry and copies this file (and its relative imports)
MetaForCausalLM.register_for_auto_class("AutoModelForCausalLM")
