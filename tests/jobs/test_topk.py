"""Blocked top-k: exact against NumPy (ties by corpus index), and memory flat in corpus size."""

from __future__ import annotations

import tracemalloc

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from f2jax.jobs.topk import block_step_memory, blocked_topk


def _reference(q: np.ndarray, c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    full = q.astype(np.float64) @ c.T.astype(np.float64)
    order = np.stack([np.lexsort((np.arange(len(c)), -row))[:k] for row in full])
    return np.take_along_axis(full, order, 1), order


@pytest.mark.parametrize("n_corpus,corpus_block", [(333, 64), (64, 64), (65, 64), (7, 64), (500, 1)])
def test_matches_numpy_with_ties(n_corpus: int, corpus_block: int) -> None:
    rng = np.random.default_rng(n_corpus)
    q = rng.integers(-2, 3, (37, 6)).astype(np.float32)  # small integers: exact scores, many ties
    c = rng.integers(-2, 3, (n_corpus, 6)).astype(np.float32)
    scores, index = blocked_topk(q, c, 20, query_block=16, corpus_block=corpus_block)
    ref_s, ref_i = _reference(q, c, min(20, n_corpus))
    np.testing.assert_array_equal(index, ref_i)
    np.testing.assert_array_equal(scores, ref_s.astype(np.float32))


def test_float_embeddings_and_mesh() -> None:
    rng = np.random.default_rng(1)
    q = rng.standard_normal((50, 16)).astype(np.float32)
    c = rng.standard_normal((300, 16)).astype(np.float32)
    ref_s, ref_i = _reference(q, c, 10)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    for m in (None, mesh):
        scores, index = blocked_topk(q, c, 10, query_block=12, corpus_block=128, mesh=m)
        np.testing.assert_array_equal(index, ref_i)
        np.testing.assert_allclose(scores, ref_s, rtol=1e-5, atol=1e-5)


def test_bad_shapes_and_empty() -> None:
    with pytest.raises(ValueError, match="equal d"):
        blocked_topk(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32), 2)
    scores, index = blocked_topk(np.zeros((0, 3), np.float32), np.zeros((4, 3), np.float32), 2)
    assert scores.shape == index.shape == (0, 2)


def test_device_temporaries_do_not_grow_with_corpus() -> None:
    small = block_step_memory(10_000, 64, 100, query_block=128, corpus_block=1024)
    large = block_step_memory(100_000, 64, 100, query_block=128, corpus_block=1024)
    assert large["argument_bytes"] > 9 * small["argument_bytes"]  # the corpus itself grows ...
    assert large["temp_bytes"] == small["temp_bytes"]  # ... the working set does not
    assert large["temp_bytes"] < 128 * 100_000 * 4 / 4  # a quarter of one query block's full score rows


def test_host_peak_flat_in_corpus_size() -> None:
    """tracemalloc sees NumPy's host allocations: with 10x the corpus, the peak beyond the
    inputs stays the same (no full score matrix, no padded corpus copy)."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((512, 32)).astype(np.float32)
    peaks = []
    for n in (4_000, 40_000):
        c = rng.standard_normal((n, 32)).astype(np.float32)
        blocked_topk(q, c, 50, query_block=128, corpus_block=1000)  # compile outside the measurement
        tracemalloc.start()
        blocked_topk(q, c, 50, query_block=128, corpus_block=1000)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    full_matrix = 512 * 40_000 * 4
    assert peaks[1] < 1.2 * peaks[0] + 64_000, peaks
    assert peaks[1] < full_matrix / 10, peaks
