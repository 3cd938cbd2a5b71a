"""Rotary position embeddings, with the rope-scaling variants Qwen3 checkpoints may declare.

Frequencies follow transformers' `modeling_rope_utils` formulas (float32), so cos/sin match.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from f2jax.model.config import Qwen3Config, UnsupportedModelError


def inverse_frequencies(cfg: Qwen3Config) -> tuple[np.ndarray, float]:
    """(inv_freq [head_dim // 2] float32, attention scaling) for the config's rope type."""
    dim = cfg.head_dim
    base = cfg.rope_theta
    inv_freq = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    inv_freq = inv_freq.astype(np.float32)
    params: dict[str, Any] = dict(cfg.rope_scaling or {})
    rope_type = params.get("rope_type", "default")
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise UnsupportedModelError("partial_rotary_factor != 1 is not supported for Qwen3")
    if rope_type == "default":
        return inv_freq, 1.0
    if rope_type == "linear":
        return (inv_freq / np.float32(params["factor"])).astype(np.float32), 1.0
    if rope_type == "llama3":
        return _llama3(inv_freq, params), 1.0
    if rope_type == "yarn":
        return _yarn(cfg, params)
    raise UnsupportedModelError(f"rope_type {rope_type!r} is not supported (default, linear, llama3, yarn)")


def _llama3(inv_freq: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    factor, low, high = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
    old_len = p["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def _yarn(cfg: Qwen3Config, p: dict[str, Any]) -> tuple[np.ndarray, float]:
    dim, base = cfg.head_dim, cfg.rope_theta
    original = p.get("original_max_position_embeddings", cfg.max_position_embeddings)
    factor = p.get("factor") or cfg.max_position_embeddings / original

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = p.get("attention_factor")
    if attention is None:
        m, m_all = p.get("mscale"), p.get("mscale_all_dim")
        attention = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)
    beta_fast, beta_slow = p.get("beta_fast") or 32, p.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if p.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - low) / (high - low), 0, 1)
    extrapolation_factor = 1 - ramp
    pos_freqs = base ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation_factor) + (
        1.0 / pos_freqs
    ) * extrapolation_factor
    return inv_freq.astype(np.float32), float(attention)


def rope_tables(cfg: Qwen3Config, seq_len: int, dtype: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos, sin of shape [seq_len, head_dim] in `dtype`, for positions 0..seq_len-1."""
    inv_freq, scaling = inverse_frequencies(cfg)
    positions = jnp.arange(seq_len, dtype=jnp.float32)
    freqs = positions[:, None] * jnp.asarray(inv_freq)[None, :]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return (jnp.cos(emb) * scaling).astype(dtype), (jnp.sin(emb) * scaling).astype(dtype)


def rope_tables_at(cfg: Qwen3Config, positions: jnp.ndarray, dtype: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos, sin [B, T, head_dim] at explicit positions [B, T] (packed rows restart at 0 per text);
    the same float32 arithmetic as `rope_tables`, so a packed text matches its unpadded run."""
    inv_freq, scaling = inverse_frequencies(cfg)
    freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return (jnp.cos(emb) * scaling).astype(dtype), (jnp.sin(emb) * scaling).astype(dtype)


def apply_rope(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """x [B, T, heads, head_dim]; cos, sin [T, head_dim] or per row [B, T, head_dim]; the
    rotate-half convention of Hugging Face Qwen3."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos, sin = (c[None, :, None, :] if c.ndim == 2 else c[:, :, None, :] for c in (cos, sin))
    return x * cos + rotated * sin
