"""YaRN context extension of a saved checkpoint (the paper extends 1024 -> 4096/8192).

`extend` writes a new checkpoint with the same weights and a config whose
rope_parameters are YaRN's (Peng et al., arXiv 2309.00071; frequencies and
attention factor from rope.rope_frequencies) and whose window is factor times
the old one. Fine-tuning at the new length is a separate, later step.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .configuration_meta import MetaConfig
from .modeling_meta import MetaForCausalLM
from .rope import RopeConfig


def extend(src_dir: str | os.PathLike, out_dir: str | os.PathLike, factor: float) -> Path:
    """Write src_dir's model to out_dir with a YaRN window of factor x the old one; returns out_dir.

    The new rope_parameters: rope_type "yarn", the old rope_theta, factor,
    original_max_position_embeddings = the old window, beta_fast 32, beta_slow 1.
    Other files of src_dir (tokenizer, model card) are copied along.
    """
    src, out = Path(src_dir), Path(out_dir)
    if out.resolve() == src.resolve():
        raise ValueError(f"extend writes a new checkpoint: give an out_dir other than {src}")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: extend into a new or empty directory")
    model = MetaForCausalLM.from_pretrained(src)
    config = model.config
    if config.position_encoding != "rope":
        raise ValueError(f"{src} uses {config.position_encoding!r} positions; YaRN extends RoPE models only")
    old_rope = config.rope
    if old_rope.rope_type != "default":
        raise ValueError(
            f"{src} is already extended ({old_rope.rope_type}, factor {old_rope.factor}); "
            "extend the original checkpoint with the combined factor instead"
        )
    if not factor > 1.0:
        raise ValueError(f"factor must be > 1 (new window / old window), got {factor}")
    old_window = config.max_position_embeddings
    new_window = factor * old_window
    if new_window != int(new_window):
        raise ValueError(f"factor x window must be a whole number of tokens, got {factor} x {old_window}")

    rope = RopeConfig(
        rope_type="yarn",
        rope_theta=old_rope.rope_theta,
        factor=float(factor),
        original_max_position_embeddings=old_window,
        beta_fast=32.0,
        beta_slow=1.0,
    )
    new_config = MetaConfig.from_dict(
        {**config.to_dict(), "rope_parameters": rope.to_dict(), "max_position_embeddings": int(new_window)}
    )
    extended = MetaForCausalLM(new_config)  # new RoPE tables; weights come next
    extended.load_state_dict(model.state_dict(), strict=True)
    extended.to(model.dtype)
    out.mkdir(parents=True, exist_ok=True)
    extended.save_pretrained(out)
    # the rest (tokenizer files, model card) belongs to the new checkpoint too
    for path in sorted(src.iterdir()):
        if path.is_file() and not (out / path.name).exists() and not path.name.startswith("model.safetensors"):
            shutil.copy2(path, out / path.name)
    return out
