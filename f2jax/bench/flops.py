"""Model FLOPs of a Qwen3 embedding forward/backward, counted from the architecture.

MFU needs a hardware-independent count of the work the model must do, not what a kernel
happens to execute. Counted: matmul FLOPs (2 per multiply-add) of the q/k/v/o projections, the
SwiGLU MLP, attention scores (QKᵀ) and the probability-weighted sum of V. Attention is counted
causal, L(L+1)/2 query-key pairs per sequence of L tokens (not L²), which is what causal
flash-attention kernels execute. Not counted: embedding lookup, norms, RoPE, softmax, the loss,
and any LM head (an embedding model has none). Training = 3 × forward (backward = 2 × forward);
rematerialised forwards are not counted, as in the usual MFU definition.

Hardware FLOPs (HFU) add what the backward recomputes (`hardware_train_flops`): `remat: full`
reruns each layer's forward (4 × forward in all), `dots` keeps the projection/MLP matmuls and
reruns the batched attention matmuls, `dots_all` keeps every matmul, and the `chunked` attention
kernel reruns its query blocks' attention in the backward whatever the remat policy (its blocks
are rematerialised). Attention stays counted causal; a kernel that computes masked-out pairs
(`xla`, `chunked`) executes more than this.
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
FLOPS_NOTE = ("model: 3x forward matmuls, causal attention L(L+1)/2, no lm_head; "
              "hardware: + forwards the backward recomputes (remat, chunked attention)")
# Extra forwards of (projection + MLP, attention) matmuls that the backward recomputes, per remat policy.
REMAT_RECOMPUTE: dict[str, tuple[int, int]] = {"none": (0, 0), "full": (1, 1), "dots": (0, 1), "dots_all": (0, 0)}


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


def hardware_train_flops(cfg: Qwen3Config, lengths: Iterable[int] | np.ndarray, *, remat: str = "none",
                         attention_recomputed: bool = False, causal: bool = True) -> int:
    """Forward + backward + recomputed-forward FLOPs: (3 + r) × linear and (3 + r') × attention,
    r, r' from `REMAT_RECOMPUTE[remat]`, r' + 1 when the attention kernel itself is rematerialised
    (`chunked` with sequences longer than one query block)."""
    if remat not in REMAT_RECOMPUTE:
        raise ValueError(f"remat must be one of {sorted(REMAT_RECOMPUTE)}, got {remat!r}")
    lin, att = REMAT_RECOMPUTE[remat]
    att += int(attention_recomputed)
    flat = np.asarray(lengths).reshape(-1)
    linear = int(flat.sum()) * linear_flops_per_token(cfg)
    attention = sum(attention_flops(cfg, int(n), causal) for n in flat)
    return (3 + lin) * linear + (3 + att) * attention
