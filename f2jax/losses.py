"""Losses of the F2LLM-v2 recipe: in-batch and hard-negative InfoNCE with Matryoshka, and KD.

All losses are pure `jnp`, compute in float32 whatever the input dtype (bf16 logits divided
by a temperature of 0.05 lose too much precision), and return float32 scalars. `mrl_dims`,
`temperature`, `passage_gradient` and `num_shards` are Python values: close over them (or mark
them static) when jitting. L2 normalisation has its one home here: `l2_normalize` (jax) and
`normalize_rows` (NumPy, for host-side vectors), with the same eps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "distill_loss",
    "hard_negative_loss",
    "inbatch_loss",
    "l2_normalize",
    "mrl_dims",
    "mrl_weights",
    "normalize_rows",
]

# Same rule as torch.nn.functional.normalize: x / max(|x|, eps).
NORM_EPS = 1e-12
_HIGHEST = jax.lax.Precision.HIGHEST  # keep similarities in true f32 on TPU/GPU (no bf16/TF32)


def mrl_dims(hidden_size: int) -> tuple[int, ...]:
    """Matryoshka widths: powers of two from 8 that are < hidden_size, then hidden_size."""
    if hidden_size < 1:
        raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
    dims, dim = [], 8
    while dim < hidden_size:
        dims.append(dim)
        dim *= 2
    return (*dims, int(hidden_size))


def mrl_weights(dims: Sequence[int]) -> tuple[float, ...]:
    """Weight 1 / (n * sqrt(d / dim)) per dim, in the order of `dims`.

    n = 1, 2, ... counts the dims from the largest down; d is the largest dim. The reference
    sums (does not average) the weighted losses, so the full width keeps weight 1.
    """
    dims = tuple(int(x) for x in dims)
    if not dims or min(dims) < 1 or len(set(dims)) != len(dims):
        raise ValueError(f"dims must be distinct positive ints, got {dims}")
    d = max(dims)
    rank = {dim: n for n, dim in enumerate(sorted(dims, reverse=True), start=1)}
    return tuple(1.0 / (rank[dim] * math.sqrt(d / dim)) for dim in dims)


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """x / max(|x|, eps); the max sits under the sqrt so zero vectors give 0, not NaN grads."""
    sq = jnp.sum(x * x, axis=axis, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, NORM_EPS * NORM_EPS))


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """NumPy x / max(|x|, eps) along the last axis, in x's dtype (host-side vectors)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), NORM_EPS)


def _dims_and_weights(dims: Sequence[int] | None, width: int) -> list[tuple[int, float]]:
    if dims is None:
        return [(width, 1.0)]
    dims = tuple(int(x) for x in dims)
    if dims and max(dims) > width:
        raise ValueError(f"mrl_dims {dims} exceed the embedding width {width}")
    return list(zip(dims, mrl_weights(dims), strict=True))


def _f32(x: jax.Array) -> jax.Array:
    return jnp.asarray(x).astype(jnp.float32)


def _row_xent(logits: jax.Array, target_logit: jax.Array) -> jax.Array:
    """Per row: -log softmax(logits)[target]."""
    return jax.nn.logsumexp(logits, axis=-1) - target_logit


def _grad_block_mask(batch: int, num_shards: int | None) -> jax.Array | None:
    """[B, B] bool: True where a query's logit against a passage carries passage gradient."""
    if num_shards is None:
        return None  # no passage gradient at all
    if num_shards < 1 or batch % num_shards:
        raise ValueError(f"batch {batch} is not divisible by num_shards={num_shards}")
    shard = jnp.arange(batch) // (batch // num_shards)
    return shard[:, None] == shard[None, :]


def inbatch_loss(
    q: jax.Array,
    p: jax.Array,
    *,
    temperature: float = 0.05,
    mrl_dims: Sequence[int] | None = None,
    passage_gradient: bool = True,
    num_shards: int | None = None,
) -> jax.Array:
    """In-batch InfoNCE: each query against every passage of the batch, target its own.

    q, p: [B, d]. Under `jax.jit` with q and p sharded over devices, B is the global batch, so
    this is the exact global loss with gradients through every passage (passage_gradient=True).

    passage_gradient=False reproduces a gathered-without-gradient reference; the loss value
    is unchanged, only gradients differ:
      * num_shards=None: no passage gets gradient from this loss, only queries do. This is the
        F2LLM reference on several GPUs: `accelerator.gather` is `all_gather_into_tensor` into
        a fresh tensor, which is not differentiable, and the local passages are not put back.
      * num_shards=S: rows are S contiguous shards of B // S (how a `data`-sharded global batch
        is laid out); a query's logits against passages of its OWN shard carry passage
        gradient, the others do not (block-diagonal rule; Tevatron/GradCache-style gathers).
    num_shards is ignored when passage_gradient=True.
    """
    q, p = _f32(q), _f32(p)
    if q.ndim != 2 or q.shape != p.shape:
        raise ValueError(f"q and p must both be [B, d], got {q.shape} and {p.shape}")
    batch, width = q.shape
    mask = None if passage_gradient else _grad_block_mask(batch, num_shards)
    rows = jnp.zeros((batch,), jnp.float32)
    for dim, weight in _dims_and_weights(mrl_dims, width):
        qn, pn = l2_normalize(q[:, :dim]), l2_normalize(p[:, :dim])
        logits = jnp.matmul(qn, pn.T, precision=_HIGHEST) / temperature
        own = pn  # the diagonal (own shard under the block rule) keeps its passage gradient
        if not passage_gradient:
            frozen = jnp.matmul(qn, jax.lax.stop_gradient(pn).T, precision=_HIGHEST) / temperature
            logits = frozen if mask is None else jnp.where(mask, logits, frozen)
            own = jax.lax.stop_gradient(pn) if mask is None else pn
        # the diagonal as a row-wise dot: no gather of a sharded [B, B] matrix
        rows = rows + weight * _row_xent(logits, jnp.sum(qn * own, axis=-1) / temperature)
    return jnp.mean(rows)  # one reduction over the (sharded) batch for all widths


def hard_negative_loss(
    q: jax.Array,
    p: jax.Array,
    negs: jax.Array,
    *,
    temperature: float = 0.05,
    mrl_dims: Sequence[int] | None = None,
) -> jax.Array:
    """Each query against [its positive, its own K hard negatives], target the positive.

    q, p: [B, d]; negs: [B, K, d]. Purely per-row, so it needs no cross-device traffic.
    """
    q, p, negs = _f32(q), _f32(p), _f32(negs)
    if q.ndim != 2 or q.shape != p.shape or negs.ndim != 3 or negs.shape[::2] != q.shape:
        raise ValueError(
            f"expected q, p [B, d], negs [B, K, d]; got {q.shape} {p.shape} {negs.shape}"
        )
    cands = jnp.concatenate([p[:, None, :], negs], axis=1)  # [B, 1 + K, d]
    rows = jnp.zeros(q.shape[:1], jnp.float32)
    for dim, weight in _dims_and_weights(mrl_dims, q.shape[-1]):
        qn, cn = l2_normalize(q[:, :dim]), l2_normalize(cands[..., :dim])
        logits = jnp.einsum("bd,bkd->bk", qn, cn, precision=_HIGHEST) / temperature
        rows = rows + weight * _row_xent(logits, logits[:, 0])
    return jnp.mean(rows)


def distill_loss(student: jax.Array, teacher: jax.Array) -> jax.Array:
    """MSE (mean over elements) of raw student vectors vs teacher vectors cut to its width.

    [..., d_s] vs [..., d_t] with d_t >= d_s: a pruned student matches the leading teacher
    components, as the reference does. The trainer sums it over queries, positives, negatives.
    """
    s, t = _f32(student), _f32(teacher)
    if s.shape[:-1] != t.shape[:-1] or t.shape[-1] < s.shape[-1]:
        raise ValueError(f"teacher {t.shape} does not cover student {s.shape}")
    return jnp.mean(jnp.square(s - t[..., : s.shape[-1]]))
