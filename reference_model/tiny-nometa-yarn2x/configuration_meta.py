"""transformers configuration of the reference meta-token model (model_type "metabench_meta").

`MetaConfig` is what config.json holds; `to_gpt_config()` turns it into the
frozen `GPTConfig` that model.py builds from, and building it is the
validation: a config that cannot make a model fails, with what to fix.
Copied next to saved checkpoints (trust_remote_code).
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

from .model import GPTConfig
from .rope import RopeConfig


class MetaConfig(PreTrainedConfig):
    model_type = "metabench_meta"

    vocab_size: int = 50304
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    # the training window; with RoPE, longer inputs run (that is the length-generalisation test)
    max_position_embeddings: int = 1024
    meta_token_id: int | None = None
    meta_attention: bool = True
    position_encoding: str = "rope"  # "rope" or "absolute"
    zero_meta_position: bool = False
    # transformers' format: {"rope_type": "default" | "yarn", "rope_theta": ..., yarn: factor, ...}
    rope_parameters: dict[str, Any] | None = None
    dropout: float = 0.0
    bias: bool = True
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if not self.tie_word_embeddings:
            raise ValueError("this model always ties lm_head to the token embedding; set tie_word_embeddings to true")
        # A config that cannot build a model fails here, with what to fix. The exception:
        # MetaConfig() must construct (transformers builds one to diff against when saving),
        # so a missing meta_token_id is reported when a model is built or loaded.
        if self.meta_token_id is not None or not self.meta_attention:
            self.to_gpt_config()

    @property
    def rope(self) -> RopeConfig:
        return RopeConfig.from_dict(self.rope_parameters)

    def to_gpt_config(self) -> GPTConfig:
        return GPTConfig(
            vocab_size=self.vocab_size,
            block_size=self.max_position_embeddings,
            n_layer=self.num_hidden_layers,
            n_head=self.num_attention_heads,
            n_embd=self.hidden_size,
            dropout=self.dropout,
            bias=self.bias,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
            position_encoding=self.position_encoding,  # type: ignore[arg-type]  (GPTConfig checks it)
            rope=self.rope,
            meta_token_id=self.meta_token_id,
            meta_attention=self.meta_attention,
            zero_meta_position=self.zero_meta_position,
        )

    @classmethod
    def from_gpt_config(cls, config: GPTConfig, **kwargs: Any) -> MetaConfig:
        """The transformers config of a GPTConfig (kwargs: bos/eos/pad ids and the like)."""
        return cls(
            vocab_size=config.vocab_size,
            hidden_size=config.n_embd,
            num_hidden_layers=config.n_layer,
            num_attention_heads=config.n_head,
            max_position_embeddings=config.block_size,
            meta_token_id=config.meta_token_id,
            meta_attention=config.meta_attention,
            position_encoding=config.position_encoding,
            zero_meta_position=config.zero_meta_position,
            rope_parameters=config.rope.to_dict(),
            dropout=config.dropout,
            bias=config.bias,
            layer_norm_eps=config.layer_norm_eps,
            initializer_range=config.initializer_range,
            **kwargs,
        )


# save_pretrained writes an auto_map entry and copies this file (and its relative imports)
MetaConfig.register_for_auto_class("AutoConfig")
