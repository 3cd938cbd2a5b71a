"""Attention alone on packed rows (`f2jax bench gpu-check --parts packed`): each kernel's fwd + bwd
time and its error against a float32 masked reference on real tokens.

One layer of Qwen3-0.6B heads (16 query / 8 KV × 128, bf16) over 144 log-normal texts (mean 256,
cut to 1024) packed into rows of 1024 by the trainer's packer, as in issue 26's kernel table:
`chunked` and `xla` with segment ids, Pallas-Triton with segment ids (`f2jax.model.triton_packed`),
cuDNN's packed layout (`f2jax.model.cudnn_packed`). Without a GPU (or `tiny`) the shapes shrink,
cuDNN is skipped with its reason, and Pallas-Triton runs interpreted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

FULL = dict(texts=144, mean=256, length=1024, heads=16, kv_heads=8, head_dim=128, dtype="bfloat16", steps=10)
TINY = dict(texts=12, mean=16, length=64, heads=4, kv_heads=2, head_dim=16, dtype="float32", steps=2)


def packed_layout(texts: int, mean: int, length: int, seed: int = 0) -> Any:
    """A `PackedBatch`-like layout (segment ids, offsets, seqlens) of `texts` log-normal texts."""
    from f2jax.bench.lengths import sample_lengths
    from f2jax.data.packing import ffd_layout, most_texts, pack_rows, row_bucket, texts_bucket

    lengths = np.clip(sample_lengths(np.random.default_rng(seed), f"lognormal:{mean}", "doc", (texts,),
                                     length), 1, length)
    row, col, used = ffd_layout(lengths, length)
    seqs = [np.ones(n, np.int32) for n in lengths]
    _, seg, _, offsets, seqlens = pack_rows(seqs, row, col, row_bucket(used), length, 0,
                                            texts_bucket(most_texts(row)))
    return seg, offsets, seqlens


def _kernels(on_gpu: bool) -> dict[str, Callable[..., Any]]:
    from f2jax.model.attention import chunked_attention, xla_attention
    from f2jax.model.cudnn_packed import cudnn_packed_attention
    from f2jax.model.triton_packed import triton_packed_attention

    kernels: dict[str, Callable[..., Any]] = {
        "chunked": lambda q, k, v, s, o, n: chunked_attention(q, k, v, None, segment_ids=s),
        "xla": lambda q, k, v, s, o, n: xla_attention(q, k, v, None, s),
        "pallas_triton": lambda q, k, v, s, o, n: triton_packed_attention(q, k, v, s, interpret=not on_gpu,
                                                                           **({} if on_gpu else {"block": 16})),
    }
    if on_gpu:
        kernels["cudnn"] = cudnn_packed_attention
    return kernels


def bench_packed_attention(*, tiny: bool = False, seed: int = 0) -> dict[str, Any]:
    """Per kernel: `packed_<kernel>_ms` (median fwd + bwd), `_out_max_abs` and `_grad_max_abs`
    (vs float32 `xla` on real tokens), `_nonfinite` (padding included) or `_error`."""
    import jax
    import jax.numpy as jnp

    from f2jax.model.attention import xla_attention
    from f2jax.model.cudnn_packed import unavailable

    on_gpu = jax.default_backend() == "gpu"
    p = TINY if tiny or not on_gpu else FULL
    seg, offsets, seqlens = (jnp.asarray(x) for x in packed_layout(p["texts"], p["mean"], p["length"], seed))
    r, t = seg.shape
    ks = jax.random.split(jax.random.key(seed), 4)
    dtype = jnp.dtype(p["dtype"])
    q = jax.random.normal(ks[0], (r, t, p["heads"], p["head_dim"]), jnp.float32)
    k, v = (jax.random.normal(kk, (r, t, p["kv_heads"], p["head_dim"]), jnp.float32) for kk in ks[1:3])
    probe = jax.random.normal(ks[3], q.shape, jnp.float32)
    real = np.asarray(seg) > 0

    def grads_of(fn: Callable[..., Any], cast: Any) -> Callable[..., Any]:
        def loss(q: Any, k: Any, v: Any) -> Any:
            out = fn(q.astype(cast), k.astype(cast), v.astype(cast), seg, offsets, seqlens)
            return (out.astype(jnp.float32) * probe).sum(), out
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))

    with jax.default_matmul_precision("highest"):
        (_, ref_out), ref_grads = grads_of(lambda q, k, v, s, o, n: xla_attention(q, k, v, None, s),
                                           jnp.float32)(q, k, v)
    out: dict[str, Any] = {"packed_rows": r, "packed_length": t, "packed_texts": p["texts"],
                           "packed_real_tokens": int(real.sum()), "packed_texts_per_row": int(seqlens.shape[1]),
                           "packed_dtype": p["dtype"], "packed_cudnn_unavailable": unavailable(jax.default_backend())}
    for name, kernel in _kernels(on_gpu).items():
        try:
            step = grads_of(kernel, dtype)
            (_, o), g = jax.block_until_ready(step(q, k, v))
            times = []
            for _ in range(p["steps"]):
                start = time.perf_counter()
                jax.block_until_ready(step(q, k, v))
                times.append(time.perf_counter() - start)
            o32 = np.asarray(o.astype(jnp.float32))
            out[f"packed_{name}_ms"] = statistics.median(times) * 1e3
            out[f"packed_{name}_out_max_abs"] = float(np.abs(o32 - np.asarray(ref_out))[real].max())
            out[f"packed_{name}_grad_max_abs"] = max(
                float(np.abs(np.asarray(a.astype(jnp.float32)) - np.asarray(b))[real].max())
                for a, b in zip(g, ref_grads, strict=True))
            out[f"packed_{name}_nonfinite"] = int((~np.isfinite(o32)).sum()
                                                  + sum((~np.isfinite(np.asarray(x, np.float32))).sum() for x in g))
        except Exception as err:  # noqa: BLE001 - record what fails, measure the rest
            out[f"packed_{name}_error"] = f"{type(err).__name__}: {str(err)[:400]}"
    return out
