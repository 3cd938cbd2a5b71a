"""Packed rows through the Pallas-Triton flash kernel (`jax.experimental.pallas.ops.gpu.attention.mha`).

The GPU fallback for packed rows where cuDNN's packed layout cannot run (jax without it, a GPU
before Hopper): segment ids in, causal within each text, 7.3 ms for a 0.6B layer's attention
(fwd + bwd) of 36 packed rows × 1024 on an H200, a third of `chunked` (issue 26). The kernel
takes equal head counts, so k/v are repeated for GQA; T is padded to a multiple of the block.
`interpret=True` runs it anywhere (slowly): the CPU tests compare it with the `xla` kernel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BLOCK = 128  # query/key block of the forward and backward passes (clipped to the padded T)


def triton_packed_attention(q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array,
                            block: int = BLOCK, interpret: bool = False) -> jax.Array:
    """q [R, T, Hq, D]; k, v [R, T, Hkv, D]; segment_ids [R, T] (0 = padding) -> [R, T, Hq, D]."""
    from jax.experimental.pallas.ops.gpu import attention as pallas_gpu

    r, t, hq, d = q.shape
    hkv = k.shape[2]
    if hq != hkv:
        k, v = (jnp.repeat(x, hq // hkv, axis=2) for x in (k, v))
    block = min(block, max(16, 1 << (t - 1).bit_length()))  # powers of two: the backward's 32 divides
    tp = -(-t // block) * block
    pad = ((0, 0), (0, tp - t), (0, 0), (0, 0))
    q, k, v = (jnp.pad(x, pad) for x in (q, k, v))
    seg = jnp.pad(segment_ids.astype(jnp.int32), ((0, 0), (0, tp - t)))  # padded columns: segment 0
    sizes = pallas_gpu.BlockSizes(block_q=block, block_k=block, block_q_dkv=min(block, 32),
                                  block_kv_dkv=min(block, 32), block_q_dq=min(block, 32),
                                  block_kv_dq=min(block, 32))
    out = pallas_gpu.mha(q, k, v, seg, sm_scale=d**-0.5, causal=True, block_sizes=sizes, interpret=interpret)
    return out[:, :t]
