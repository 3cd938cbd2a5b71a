"""Encode benchmark on a very small model: both sides run and agree; texts are deterministic."""

from __future__ import annotations

from f2jax.bench.encode import bench_encode, padded_tokens_f2jax, padded_tokens_st
from f2jax.bench.texts import stdlib_texts


def test_texts_are_deterministic_and_varied():
    texts = stdlib_texts(64)
    assert texts == stdlib_texts(64)
    assert len(set(texts)) == 64
    assert max(map(len, texts)) > 4 * min(map(len, texts))


def test_padded_token_counts():
    lengths = [3, 20, 5, 9]
    assert padded_tokens_f2jax(lengths, 2, [16, 32]) == 32 * 2 + 16 * 2
    assert padded_tokens_st(["aaa", "b" * 20, "c" * 5, "d" * 9], lengths, 2) == 20 * 2 + 5 * 2


def test_bench_encode_runs_and_agrees(tmp_path):
    result = bench_encode(
        12, 8, hidden=32, layers=1, heads=4, kv_heads=2, max_length=16, repeats=1, workdir=tmp_path
    )
    assert result["texts"] == 12
    assert result["f2jax_texts_per_s"] == 12 / result["f2jax_s"]
    assert result["speedup_f2jax_over_st"] == result["st_s"] / result["f2jax_s"]
    assert result["cosine_min"] > 0.999
    assert result["f2jax_padded_tokens"] >= result["real_tokens"]
    assert result["st_padded_tokens"] >= result["real_tokens"]
    assert result["max_tokens"] <= 16
