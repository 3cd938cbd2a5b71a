"""Encoder: packed and bucketed batching, Matryoshka truncation, prompts, bounded compilation."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import make_hf_model

import f2jax
from f2jax.encode import batch_bucket, bucket_for, length_buckets
from f2jax.sharding import make_mesh

TEXTS = ["short", "a somewhat longer sentence here", "mid length text", "z" * 300, "hello", "again"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_hf_model(tmp_path_factory.mktemp("enc"))[0]


@pytest.fixture(scope="module")
def encoder(model_dir):
    return f2jax.load(model_dir, max_length=64)


def _one_by_one(encoder, texts, **kw):
    return np.concatenate([encoder.encode([t], batch_size=1, **kw) for t in texts])


def test_batched_encoding_equals_one_at_a_time(encoder):
    batched = encoder.encode(TEXTS, batch_size=4)
    np.testing.assert_allclose(batched, _one_by_one(encoder, TEXTS), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=-1), 1.0, rtol=1e-6)


def test_dim_truncates_before_normalising(encoder):
    raw = encoder.encode(TEXTS, normalize=False)
    small = encoder.encode(TEXTS, dim=16)
    expected = raw[:, :16] / np.linalg.norm(raw[:, :16], axis=-1, keepdims=True)
    np.testing.assert_allclose(small, expected, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(TEXTS, dim=64), encoder.encode(TEXTS), atol=0)
    with pytest.raises(ValueError, match="dim"):
        encoder.encode(TEXTS, dim=65)


def test_prompt_is_prepended(encoder):
    with_prompt = encoder.encode(TEXTS[:2], prompt="Query: ")
    manual = encoder.encode(["Query: " + t for t in TEXTS[:2]])
    np.testing.assert_allclose(with_prompt, manual, atol=1e-6)
    assert not np.allclose(with_prompt, encoder.encode(TEXTS[:2]))


def test_hidden_states_last_token_is_the_embedding(encoder):
    ids = encoder.tokenizer(TEXTS[:3], truncation=True, max_length=64)["input_ids"]
    length = max(map(len, ids))
    arr = np.zeros((3, length), np.int32)
    mask = np.zeros_like(arr)
    for i, row in enumerate(ids):
        arr[i, :len(row)], mask[i, :len(row)] = row, 1
    hidden = encoder.hidden_states(arr, mask)
    last = hidden[np.arange(3), mask.sum(-1) - 1]
    np.testing.assert_allclose(encoder.encode(TEXTS[:3], normalize=False), last, atol=1e-5)


@pytest.mark.parametrize("packing", [True, False])
def test_compiled_shapes_are_bounded(model_dir, packing):
    encoder = f2jax.load(model_dir, max_length=64, packing=packing)
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    for n in (200, 37, 120):
        texts = [" ".join(rng.choice(words, size=rng.integers(1, 60))) for _ in range(n)]
        encoder.encode(texts, batch_size=16)
    # padded: one shape per (length bucket, batch bucket); packed: per (row length, row bucket)
    compiled = encoder._packed if packing else encoder._pooled
    assert 0 < compiled._cache_size() <= len(length_buckets(64)) * 5


@pytest.mark.parametrize("mix", ["short", "lognormal", "long", "one"])
def test_packed_equals_padded(encoder, mix):
    """Packing changes which texts share a call, never a text's vector (float32)."""
    rng = np.random.default_rng(len(mix))
    size = {"short": lambda: int(rng.integers(1, 6)), "lognormal": lambda: int(min(rng.lognormal(2.5, 0.9), 64)),
            "long": lambda: int(rng.integers(40, 65)), "one": lambda: 64}[mix]
    ids = [rng.integers(5, 1000, size=max(1, size())).tolist() for _ in range(1 if mix == "one" else 150)]
    packed = encoder.embed_ids(ids, 8, packing=True)
    padded = encoder.embed_ids(ids, 8, packing=False)
    scale = np.linalg.norm(padded, axis=-1, keepdims=True)
    assert np.max(np.abs(packed - padded) / scale) <= 1e-5


@pytest.mark.parametrize("packing", [True, False])
def test_sharded_encoder_matches(model_dir, encoder, packing):
    sharded = f2jax.load(model_dir, max_length=64, mesh=make_mesh(data=4, fsdp=1, tensor=2), packing=packing)
    texts = TEXTS * 7
    np.testing.assert_allclose(sharded.encode(texts, batch_size=8), encoder.encode(texts, batch_size=8),
                               atol=2e-5)


def test_bad_inputs(encoder):
    with pytest.raises(TypeError, match="item 1"):
        encoder.encode(["ok", None])
    with pytest.raises(KeyError, match="nope"):
        encoder.encode(["ok"], prompt_name="nope")
    assert encoder.encode([]).shape == (0, 64)


def test_bucket_helpers():
    assert length_buckets(100) == [16, 32, 64, 100]
    assert bucket_for(17, [16, 32]) == 32
    assert [batch_bucket(n, 32) for n in (1, 3, 17, 32)] == [1, 4, 32, 32]
    with pytest.raises(ValueError):
        bucket_for(33, [16, 32])
