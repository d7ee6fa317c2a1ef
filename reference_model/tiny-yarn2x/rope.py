"""Rotary position embeddings: the one place RoPE and YaRN frequencies come from.

`rope_frequencies` is the single source of truth for the inverse frequencies
and the attention factor of every RoPE variant the reference model supports
("default" and "yarn"), chosen from one table. `RopeConfig` is the typed form of
transformers' `rope_parameters` dict, so a checkpoint's config.json reads the
same to us, to transformers and to vLLM.

This file is copied next to saved checkpoints (trust_remote_code), so it
imports only torch and the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

RopeType = Literal["default", "yarn"]


@dataclass(frozen=True)
class RopeConfig:
    """transformers' `rope_parameters`, typed. Only "default" and "yarn" exist here."""

    rope_type: RopeType = "default"
    rope_theta: float = 10000.0
    # yarn only: s, the context extension factor (new window / pre-training window)
    factor: float | None = None
    # yarn only: the pre-training window L the ramp is measured against
    original_max_position_embeddings: int | None = None
    beta_fast: float = 32.0  # yarn: dims with more than beta_fast rotations over L are not scaled
    beta_slow: float = 1.0  # yarn: dims with fewer than beta_slow rotations over L are fully interpolated

    def __post_init__(self) -> None:
        if self.rope_type not in _ROPE_FUNCTIONS:
            raise ValueError(f"rope_type {self.rope_type!r} is not supported; use one of {sorted(_ROPE_FUNCTIONS)}")
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta must be > 0, got {self.rope_theta}")
        if self.rope_type == "default":
            if self.factor is not None or self.original_max_position_embeddings is not None:
                raise ValueError(
                    "rope_type 'default' takes no factor or original_max_position_embeddings; "
                    "set rope_type to 'yarn' to extend the context"
                )
            return
        if self.factor is None or not self.factor >= 1.0:
            raise ValueError(f"yarn needs factor >= 1 (new window / old window), got {self.factor}")
        if self.original_max_position_embeddings is None or self.original_max_position_embeddings < 1:
            raise ValueError(
                "yarn needs original_max_position_embeddings: the context window the model was "
                f"pre-trained with, got {self.original_max_position_embeddings}"
            )
        if not self.beta_fast > self.beta_slow > 0:
            raise ValueError(
                f"yarn needs beta_fast > beta_slow > 0 (paper: 32 and 1), got {self.beta_fast}, {self.beta_slow}"
            )

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> RopeConfig:
        """Read transformers' `rope_parameters` dict; an unknown key is an error, not ignored."""
        if not params:
            return cls()
        params = dict(params)
        known = {"rope_type", "rope_theta", "factor", "original_max_position_embeddings", "beta_fast", "beta_slow"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"rope_parameters has keys this model does not implement: {unknown}; known: {sorted(known)}"
            )
        for key in ("beta_fast", "beta_slow"):
            if params.get(key) is None:
                params.pop(key, None)
        return cls(**params)

    def to_dict(self) -> dict[str, Any]:
        """transformers' `rope_parameters` dict (the yarn keys only for yarn)."""
        if self.rope_type == "default":
            return {"rope_type": "default", "rope_theta": self.rope_theta}
        return asdict(self)


def _default_frequencies(head_dim: int, rope: RopeConfig) -> tuple[torch.Tensor, float]:
    # theta_d = base^(-2d/D), d = 0 .. D/2-1 (RoFormer, Su et al. 2021)
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim
    return 1.0 / (rope.rope_theta**exponents), 1.0


def _yarn_frequencies(head_dim: int, rope: RopeConfig) -> tuple[torch.Tensor, float]:
    # YaRN (Peng et al. 2023, arXiv 2309.00071), section 3: NTK-by-parts + attention temperature
    assert rope.factor is not None and rope.original_max_position_embeddings is not None
    s, L, base = rope.factor, rope.original_max_position_embeddings, rope.rope_theta
    pos_freqs = base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (D/2,)
    extrapolated = 1.0 / pos_freqs  # the pre-training frequencies, kept for high-frequency dims
    interpolated = 1.0 / (s * pos_freqs)  # position interpolation, for low-frequency dims

    def dim_with_rotations(rotations: float) -> float:
        # the (fractional) dim index whose wavelength fits `rotations` times into L
        return head_dim * math.log(L / (rotations * 2 * math.pi)) / (2 * math.log(base))

    # beta_fast bounds the extrapolated side (low dim index), beta_slow the interpolated side;
    # floor/ceil as in the reference implementation and transformers (truncate=True)
    low = max(math.floor(dim_with_rotations(rope.beta_fast)), 0)
    high = min(math.ceil(dim_with_rotations(rope.beta_slow)), head_dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)  # (D/2,)
    keep = 1.0 - ramp  # 1 -> extrapolate (keep the frequency), 0 -> interpolate (divide by s)
    inv_freq = interpolated * (1.0 - keep) + extrapolated * keep
    # sqrt(1/t) = 0.1 ln(s) + 1, multiplied into cos and sin (so into both q and k)
    attention_factor = 0.1 * math.log(s) + 1.0 if s > 1.0 else 1.0
    return inv_freq, attention_factor


_ROPE_FUNCTIONS: dict[str, Callable[[int, RopeConfig], tuple[torch.Tensor, float]]] = {
    "default": _default_frequencies,
    "yarn": _yarn_frequencies,
}


def rope_frequencies(head_dim: int, rope: RopeConfig) -> tuple[torch.Tensor, float]:
    """Inverse frequencies (head_dim/2,) float32 and the attention factor for `rope`.

    Conventions, pinned (they match transformers' `ROPE_INIT_FUNCTIONS` and vLLM's
    neox-style rotary embedding):

    - Rotation is "rotate half" (GPT-NeoX): dim i pairs with dim i + head_dim/2,
      and both halves use inv_freq[i].
    - default: inv_freq[i] = theta^(-2i/head_dim), attention factor 1.
    - yarn: NTK-by-parts. Dims that rotate more than `beta_fast` (32) times over
      the pre-training window L keep their frequency, dims that rotate fewer
      than `beta_slow` (1) times are divided by the factor s, with a linear ramp
      in between (bounds floored/ceiled). Attention factor mscale =
      0.1 ln(s) + 1, applied to cos and sin as transformers does, so attention
      logits scale by mscale^2 = 1/t.
    """
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim > 0, got {head_dim}")
    return _ROPE_FUNCTIONS[rope.rope_type](head_dim, rope)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, nh, T, hs) by the angles whose cos/sin are (B, 1, T, hs)."""
    return x * cos + rotate_half(x) * sin


class Rotary(torch.nn.Module):
    """Turns position ids into the cos/sin tables `apply_rotary` wants."""

    def __init__(self, head_dim: int, rope: RopeConfig) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.rope = rope
        inv_freq, self.attention_factor = rope_frequencies(head_dim, rope)
        # derived from the config, so never saved in checkpoints
        self.inv_freq: torch.Tensor
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def reset_parameters(self) -> None:
        """Recompute the buffer (transformers loads models on the meta device, then calls this)."""
        inv_freq, self.attention_factor = rope_frequencies(self.head_dim, self.rope)
        self.inv_freq = inv_freq.to(self.inv_freq.device)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # positions (B, T) -> cos, sin (B, 1, T, hs), computed in float32 then cast
        freqs = positions[..., None].float() * self.inv_freq.float()  # (B, T, hs/2)
        angles = torch.cat((freqs, freqs), dim=-1)[:, None]  # (B, 1, T, hs)
        cos = angles.cos() * self.attention_factor
        sin = angles.sin() * self.attention_factor
        return cos.to(dtype), sin.to(dtype)
