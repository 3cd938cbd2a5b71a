"""Model FLOPs of a Qwen3 embedding forward/backward, counted from the architecture.

MFU needs a hardware-independent count of the work the model must do, not what a kernel
happens to execute. Counted: matmul FLOPs (2 per multiply-add) of the q/k/v/o projections, the
SwiGLU MLP, attention scores (QKᵀ) and the probability-weighted sum of V. Attention is counted
causal, L(L+1)/2 query-key pairs per sequence of L tokens (not L²), which is what causal
flash-attention kernels execute. Not counted: embedding lookup, norms, RoPE, softmax, the loss,
and any LM head (an embedding model has none). Training = 3 × forward (backward = 2 × forward);
rematerialised forwards are not counted, as in the usual MFU definition.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from f2jax.model.config import Qwen3Config

# Dense bf16 peak FLOP/s per chip (no sparsity), by a substring of jax's `device_kind`; the first
# match wins, so the more specific TPU names ("TPU v5 lite" = v5e) come before "TPU v5" (= v5p).
PEAK_BF16_FLOPS: dict[str, float] = {
    "H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12,
    "TPU V4": 275e12, "TPU V5 LITE": 197e12, "TPU V5E": 197e12, "TPU V5P": 459e12, "TPU V5": 459e12,
    "TPU V6 LITE": 918e12, "TPU V6E": 918e12,
}


def linear_flops_per_token(cfg: Qwen3Config) -> int:
    """Projection + MLP FLOPs of one token through every layer."""
    h, m = cfg.hidden_size, cfg.intermediate_size
    qkv = 2 * h * (cfg.q_dim + 2 * cfg.kv_dim)
    out = 2 * cfg.q_dim * h
    mlp = 2 * 3 * h * m  # gate, up, down
    return cfg.num_hidden_layers * (qkv + out + mlp)


def attention_flops(cfg: Qwen3Config, length: int, causal: bool = True) -> int:
    """Scores + weighted-sum FLOPs of one sequence of `length` tokens through every layer."""
    pairs = length * (length + 1) // 2 if causal else length * length
    return cfg.num_hidden_layers * 4 * pairs * cfg.head_dim * cfg.num_attention_heads


def forward_flops(cfg: Qwen3Config, lengths: Iterable[int] | np.ndarray, causal: bool = True) -> int:
    """Forward FLOPs of a batch of sequences with these token counts (real or padded)."""
    per_token = linear_flops_per_token(cfg)
    return sum(int(n) * per_token + attention_flops(cfg, int(n), causal)
               for n in np.asarray(lengths).reshape(-1))


def train_flops(cfg: Qwen3Config, lengths: Iterable[int] | np.ndarray, causal: bool = True) -> int:
    """Forward + backward FLOPs: 3 × forward."""
    return 3 * forward_flops(cfg, lengths, causal)


def peak_bf16_flops(device_kind: str) -> float | None:
    """Dense bf16 peak FLOP/s of a known accelerator, else None (CPU, unknown GPU)."""
    kind = device_kind.upper()
    return next((peak for name, peak in PEAK_BF16_FLOPS.items() if name in kind), None)
