"""Causal self-attention kernels with a right-padding mask.

`xla`: explicit einsum + masked softmax (float32 logits), runs everywhere.
`dot_product`: `jax.nn.dot_product_attention`, which dispatches to cuDNN flash attention on
GPU; the padding mask is passed as per-row key lengths so the fused kernel honours it.
`cudnn`: the same call forced onto cuDNN (fails loudly where cuDNN is unavailable).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from f2jax.model.options import ATTENTION_IMPLS, AttentionImpl


def xla_attention(q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array) -> jax.Array:
    """q [B, T, Hq, D]; k, v [B, T, Hkv, D]; lengths [B] real tokens per row -> [B, T, Hq, D]."""
    b, t, hq, d = q.shape
    hkv = k.shape[2]
    q = q.reshape(b, t, hkv, hq // hkv, d)
    logits = jnp.einsum("bqhgd,bkhd->bhgqk", q, k, preferred_element_type=jnp.float32)
    logits = logits * (d**-0.5)
    pos = jnp.arange(t)
    allowed = (pos[None, :] <= pos[:, None])[None] & (pos[None, None, :] < lengths[:, None, None])
    logits = jnp.where(allowed[:, None, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bhgqk,bkhd->bqhgd", probs, v, preferred_element_type=jnp.float32)
    return out.reshape(b, t, hq, d).astype(v.dtype)


def fused_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array, implementation: str | None
) -> jax.Array:
    lengths = lengths.astype(jnp.int32)
    return jax.nn.dot_product_attention(
        q, k, v, is_causal=True, query_seq_lengths=lengths, key_value_seq_lengths=lengths,
        implementation=implementation,
    )


def attend(
    q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array, impl: AttentionImpl = "xla"
) -> jax.Array:
    if impl == "xla":
        return xla_attention(q, k, v, lengths)
    if impl == "dot_product":
        return fused_attention(q, k, v, lengths, None)
    if impl == "cudnn":
        return fused_attention(q, k, v, lengths, "cudnn")
    raise ValueError(f"attention implementation must be one of {ATTENTION_IMPLS}, got {impl!r}")
