"""Tiny random Qwen3 checkpoints built locally with transformers (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Qwen3Model as HFQwen3Model

from f2jax.testing import save_random_qwen3

TINY = dict(
    vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
    rope_theta=1_000_000.0, rms_norm_eps=1e-6,
)


def make_hf_model(
    out: Path, *, seed: int = 0, with_tokenizer: bool = True, dtype: torch.dtype = torch.float32,
    **overrides: Any,
) -> tuple[Path, HFQwen3Model]:
    """Save a random `Qwen3Model` (every weight randomised, norms and biases included) to `out`."""
    return save_random_qwen3(out, {**TINY, **overrides}, seed=seed, with_tokenizer=with_tokenizer, dtype=dtype)


def random_batch(
    rng: np.random.Generator, batch: int, length: int, vocab: int = 151_000
) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ids and mask with mixed lengths (one row full length)."""
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    ids = rng.integers(0, vocab, size=(batch, length)).astype(np.int32)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
    return ids * mask, mask


def hf_hidden_states(model: HFQwen3Model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(ids, dtype=torch.long),
                    attention_mask=torch.as_tensor(mask, dtype=torch.long))
    return out.last_hidden_state.float().numpy()
