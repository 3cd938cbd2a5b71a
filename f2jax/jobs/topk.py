"""Exact top-k retrieval by blocked matrix products on the device, never the full score matrix.

For each block of queries, one jitted call walks the corpus in fixed-size blocks
(`lax.fori_loop`), scores the block and merges it into a running top-k with `lax.top_k`. Memory
beyond the inputs is O(query_block x (corpus_block + k)) whatever the corpus size, so 100k or
10M passages fit wherever their embeddings fit.

Ties are broken by corpus index ascending: `lax.top_k` puts the lower position first on equal
values, and the running top-k (all earlier, lower-index blocks, already ordered) sits before the
new block in every merge.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from f2jax.compiled_memory import compiled_memory

_NO_INDEX = np.iinfo(np.int32).max


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    if x.shape[0] == rows:
        return x
    out = np.zeros((rows, x.shape[1]), x.dtype)
    out[: x.shape[0]] = x
    return out


@functools.partial(jax.jit, static_argnames=("k", "corpus_block"))
def _block_topk(queries: jax.Array, corpus: jax.Array, *, k: int, corpus_block: int) -> tuple[jax.Array, jax.Array]:
    """Top-k (scores, corpus indices) of one query block against the whole corpus. The last
    block starts early (at n - corpus_block) instead of being padded, so the corpus is never
    copied; its rows already seen are masked out."""
    bq, n = queries.shape[0], corpus.shape[0]
    ids = jnp.arange(corpus_block, dtype=jnp.int32)

    def merge(b: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        best_s, best_i = carry
        start = jnp.minimum(b * corpus_block, n - corpus_block)
        block = jax.lax.dynamic_slice_in_dim(corpus, start, corpus_block)
        scores = jnp.matmul(queries, block.T, precision=jax.lax.Precision.HIGHEST).astype(jnp.float32)
        index = start + ids
        scores = jnp.where(index[None, :] >= b * corpus_block, scores, -jnp.inf)
        cat_s = jnp.concatenate([best_s, scores], axis=1)
        cat_i = jnp.concatenate([best_i, jnp.broadcast_to(index, (bq, corpus_block))], axis=1)
        top_s, pos = jax.lax.top_k(cat_s, k)
        return top_s, jnp.take_along_axis(cat_i, pos, axis=1)

    init = (jnp.full((bq, k), -jnp.inf, jnp.float32), jnp.full((bq, k), _NO_INDEX, jnp.int32))
    return jax.lax.fori_loop(0, -(-n // corpus_block), merge, init)


def _placer(mesh: Mesh | None) -> tuple[Any, Any, int]:
    """(place queries, place corpus, query-block multiple): queries split over every device of
    the mesh, the corpus replicated; no mesh means the default device."""
    if mesh is None or mesh.size == 1:
        return jnp.asarray, jnp.asarray, 1
    rows = NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))
    full = NamedSharding(mesh, PartitionSpec())
    return (lambda x: jax.device_put(x, rows)), (lambda x: jax.device_put(x, full)), mesh.size


def blocked_topk(queries: np.ndarray, corpus: np.ndarray, k: int, *, query_block: int = 256,
                 corpus_block: int = 4096, mesh: Mesh | None = None,
                 progress: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of `queries @ corpus.T` per row: (scores [nq, k'] float32, indices [nq, k']
    int64), k' = min(k, len(corpus)), sorted by score descending then corpus index ascending."""
    if queries.ndim != 2 or corpus.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"queries {queries.shape} and corpus {corpus.shape} must be [n, d] with equal d")
    n_q, n_c = queries.shape[0], corpus.shape[0]
    k = min(k, n_c)
    if n_q == 0 or k == 0:
        return np.zeros((n_q, k), np.float32), np.zeros((n_q, k), np.int64)
    place_q, place_c, multiple = _placer(mesh)
    corpus_block = max(1, min(corpus_block, n_c))
    query_block = -(-max(1, min(query_block, n_q)) // multiple) * multiple
    dtype = np.result_type(queries.dtype, corpus.dtype)
    corpus_dev = place_c(np.asarray(corpus, dtype))
    scores = np.empty((n_q, k), np.float32)
    index = np.empty((n_q, k), np.int64)

    def collect(start: int, result: tuple[jax.Array, jax.Array]) -> None:
        rows = min(query_block, n_q - start)
        scores[start:start + rows] = np.asarray(result[0])[:rows]
        index[start:start + rows] = np.asarray(result[1])[:rows]
        if progress is not None:
            progress.update(rows)

    previous = None  # one block in flight while the host copies the last one back
    for start in range(0, n_q, query_block):
        block = _pad_rows(np.asarray(queries[start:start + query_block], dtype), query_block)
        result = _block_topk(place_q(block), corpus_dev, k=k, corpus_block=corpus_block)
        if previous is not None:
            collect(*previous)
        previous = (start, result)
    collect(*previous)
    return scores, index


def block_step_memory(n_corpus: int, dim: int, k: int, *, query_block: int = 256,
                      corpus_block: int = 4096, dtype: Any = np.float32) -> dict[str, int]:
    """XLA's memory analysis of one query-block call: the temporaries must not grow with the
    corpus (only the corpus argument does)."""
    q = jax.ShapeDtypeStruct((query_block, dim), dtype)
    c = jax.ShapeDtypeStruct((n_corpus, dim), dtype)
    compiled = _block_topk.lower(q, c, k=min(k, n_corpus), corpus_block=min(corpus_block, n_corpus)).compile()
    mem = compiled_memory(compiled)
    return {key: mem[key] for key in ("temp_bytes", "argument_bytes", "output_bytes")}
