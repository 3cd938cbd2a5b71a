"""An instrumented Qwen3 forward pass over Hugging Face-named tensors, for importance scoring.

Pruning needs what the production model (f2jax.model.qwen3, a scanned stack) does not expose:
each block's input and output, every norm's input, the MLP activations and per-head attention
outputs. This forward follows the model's math exactly (RMSNorm in float32, q/k norm, RoPE,
GQA via `f2jax.model.attention.attend`, SwiGLU) on the checkpoint's own tensors, one jitted
block at a time, so layers can be skipped and statistics reduced on device. A test pins its
final hidden states to the model's (<= 1e-5, float32) so the two cannot silently diverge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from f2jax.model.attention import attend
from f2jax.model.config import Qwen3Config
from f2jax.model.rope import apply_rope, rope_tables

Tensors = Mapping[str, np.ndarray]  # HF names without the "model." prefix
LAYER_PARTS = (
    "input_layernorm.weight", "post_attention_layernorm.weight",
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
    "self_attn.q_norm.weight", "self_attn.k_norm.weight",
    "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
)
BIAS_PARTS = ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias", "self_attn.o_proj.bias")


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    x32 = x.astype(jnp.float32)
    return weight * (x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps))


def _linear(x: jax.Array, p: Mapping[str, jax.Array], name: str) -> jax.Array:
    """x @ W.T (+ b), W stored [out, in] as transformers does."""
    y = jnp.einsum("...i,oi->...o", x, p[f"{name}.weight"])
    bias = p.get(f"{name}.bias")
    return y if bias is None else y + bias


def block(cfg: Qwen3Config, p: Mapping[str, jax.Array], x: jax.Array, cos: jax.Array, sin: jax.Array,
          lengths: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One decoder layer; returns its output and the taps importance scoring reads."""
    b, t, _ = x.shape
    eps, d = cfg.rms_norm_eps, cfg.head_dim
    heads, kv = p["self_attn.q_proj.weight"].shape[0] // d, p["self_attn.k_proj.weight"].shape[0] // d
    h = rms_norm(x, p["input_layernorm.weight"], eps)
    q = rms_norm(_linear(h, p, "self_attn.q_proj").reshape(b, t, heads, d), p["self_attn.q_norm.weight"], eps)
    k = rms_norm(_linear(h, p, "self_attn.k_proj").reshape(b, t, kv, d), p["self_attn.k_norm.weight"], eps)
    v = _linear(h, p, "self_attn.v_proj").reshape(b, t, kv, d)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    attn = attend(q, k, v, lengths, "xla")  # [b, t, heads, d]
    mid = x + _linear(attn.reshape(b, t, heads * d), p, "self_attn.o_proj")
    h2 = rms_norm(mid, p["post_attention_layernorm.weight"], eps)
    act = jax.nn.silu(_linear(h2, p, "mlp.gate_proj")) * _linear(h2, p, "mlp.up_proj")
    out = mid + _linear(act, p, "mlp.down_proj")
    return out, {"attn_in": x, "mlp_in": mid, "heads": attn, "act": act}


def _row_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over real tokens per row: [b, t, ...] -> [b, ...]."""
    m = mask.reshape(mask.shape + (1,) * (x.ndim - 2))
    return jnp.sum(x * m, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1).reshape((-1,) + (1,) * (x.ndim - 2))


def minitron(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Minitron activation statistic: mean |x| over real tokens, then sum of squares over the
    batch (the square root of the total over all batches is the L2 aggregate)."""
    return jnp.sum(jnp.square(_row_mean(jnp.abs(x), mask)), axis=0)


def block_stats(out: jax.Array, taps: dict[str, jax.Array], mask: jax.Array) -> dict[str, jax.Array]:
    """Per-batch sums: block-influence cosine, norm-input channels, MLP channels, query heads."""
    x, m = taps["attn_in"].astype(jnp.float32), mask.astype(jnp.float32)
    y = out.astype(jnp.float32)
    cos = jnp.sum(x * y, -1) * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1) * jnp.sum(y * y, -1), 1e-30))
    return {
        "cos_sum": jnp.sum(cos * m), "tokens": jnp.sum(m),
        "hidden": jnp.stack([minitron(x, m), minitron(taps["mlp_in"], m)]),
        "mlp": minitron(taps["act"], m),
        "heads": minitron(jnp.linalg.norm(taps["heads"].astype(jnp.float32), axis=-1), m),
    }


class Forward:
    """The checkpoint's tensors on device (float32, replicated) and per-block jitted functions."""

    def __init__(self, cfg: Qwen3Config, tensors: Tensors, mesh: Mesh | None = None):
        self.cfg, self.mesh = cfg, mesh
        rep = None if mesh is None else NamedSharding(mesh, PartitionSpec())

        def put(a: np.ndarray) -> jax.Array:
            a = np.asarray(a, np.float32)
            return jax.device_put(a, rep) if rep is not None else jnp.asarray(a)

        self.embed = put(tensors["embed_tokens.weight"])
        self.norm = put(tensors["norm.weight"])
        self.layers = [
            {part: put(tensors[f"layers.{i}.{part}"]) for part in (*LAYER_PARTS, *BIAS_PARTS)
             if f"layers.{i}.{part}" in tensors}
            for i in range(cfg.num_hidden_layers)
        ]
        self._block = jax.jit(lambda p, x, c, s, n: block(cfg, p, x, c, s, n)[0])
        self._stats = jax.jit(lambda p, x, c, s, n, m: _with_stats(cfg, p, x, c, s, n, m))
        self._final = jax.jit(lambda w, x, m: (rms_norm(x, w, cfg.rms_norm_eps),
                                               minitron(x.astype(jnp.float32), m.astype(jnp.float32))))

    def _place(self, a: np.ndarray) -> jax.Array:
        if self.mesh is None:
            return jnp.asarray(a)
        n = self.mesh.devices.size
        spec = PartitionSpec(self.mesh.axis_names) if a.shape[0] % n == 0 else PartitionSpec()
        return jax.device_put(a, NamedSharding(self.mesh, spec))

    def run(self, ids: np.ndarray, mask: np.ndarray, *, skip: Iterable[int] = (),
            stats: bool = False) -> tuple[jax.Array, dict[str, Any] | None]:
        """Final-norm hidden states [B, T, H] (float32) with layers in `skip` left out, and
        (stats=True) per-layer statistics as host arrays (None for skipped layers)."""
        ids_d, mask_d = self._place(np.asarray(ids, np.int32)), self._place(np.asarray(mask, np.int32))
        lengths = jnp.sum(mask_d, axis=-1)
        cos, sin = rope_tables(self.cfg, ids.shape[1], jnp.float32)
        x = self.embed[ids_d]
        skip = set(skip)
        per_layer: list[dict[str, np.ndarray] | None] = []
        for i, p in enumerate(self.layers):
            if i in skip:
                per_layer.append(None)
            elif stats:
                x, s = self._stats(p, x, cos, sin, lengths, mask_d)
                per_layer.append(jax.device_get(s))
            else:
                x = self._block(p, x, cos, sin, lengths)
        hidden, final = self._final(self.norm, x, mask_d)
        return hidden, ({"layers": per_layer, "final": np.asarray(final)} if stats else None)


def _with_stats(cfg: Qwen3Config, p: Mapping[str, jax.Array], x: jax.Array, cos: jax.Array, sin: jax.Array,
                lengths: jax.Array, mask: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    out, taps = block(cfg, p, x, cos, sin, lengths)
    return out, block_stats(out, taps, mask)


def last_token(hidden: jax.Array, mask: np.ndarray) -> jax.Array:
    """[B, T, H] -> [B, H] at each row's last real token (the F2LLM embedding)."""
    idx = jnp.maximum(jnp.asarray(mask).sum(-1) - 1, 0)
    return jnp.take_along_axis(hidden, idx[:, None, None], axis=1)[:, 0]
