"""The cuDNN packed-attention adapter, on CPU: its guarded import of jax's private entry point,
and that the packer's offsets/seqlens mean what cuDNN's packed layout reads (same texts, same
causal mask as the segment ids), down to jax's own rewrite of them into cuDNN's ragged offsets."""

from __future__ import annotations

import importlib
import types

import jax.numpy as jnp
import numpy as np
import pytest

from f2jax.data.packing import pack_texts, packing_shape
from f2jax.model import cudnn_packed


def packed(seed: int, b: int = 4, k: int = 3, length: int = 32):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, length + 1, size=b * (2 + k))
    lengths[0], lengths[b : 2 * b] = length, 1  # a text filling a row; 1-token texts share rows
    seqs = [np.ones(n, np.int32) for n in lengths]
    rows, texts = packing_shape([lengths], b, k, length)
    return pack_texts(seqs[:b], seqs[b : 2 * b], seqs[2 * b :], k, length=length, rows=rows + 1, pad_id=0,
                      texts=texts)


def segment_mask(seg: np.ndarray) -> np.ndarray:
    t = seg.shape[1]
    causal = np.tril(np.ones((t, t), bool))
    return (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] > 0) & causal


@pytest.mark.parametrize("seed", range(4))
def test_offsets_mask_equals_the_segment_mask(seed):
    batch = packed(seed)
    allowed = cudnn_packed.allowed_from_offsets(jnp.asarray(batch.offsets), jnp.asarray(batch.seqlens),
                                                batch.ids.shape[1])
    np.testing.assert_array_equal(np.asarray(allowed), segment_mask(batch.segment_ids))


@pytest.mark.parametrize("seed", range(3))
def test_jax_rewrites_them_into_the_ragged_offsets_of_our_texts(seed):
    """jax's `_fix_seqlen_offsets` (run inside the cuDNN call) turns per-row [R, M+1] / [R, M] into
    cuDNN's flat ragged offsets over all R·T tokens: they must name exactly our texts."""
    mod = importlib.import_module(cudnn_packed.MODULE)
    fix = getattr(mod, "_fix_seqlen_offsets", None)
    if fix is None:
        pytest.skip("this jax has no _fix_seqlen_offsets")
    batch = packed(seed)
    r, t = batch.ids.shape
    heads, dim = 2, 8
    q = jnp.zeros((r, t, heads, dim), jnp.bfloat16)
    off, lens = jnp.asarray(batch.offsets), jnp.asarray(batch.seqlens)
    q_len, _, q_off, _ = fix(lens, lens, off, off, q, q)
    q_len, q_off = np.asarray(q_len).reshape(-1), np.asarray(q_off).reshape(-1) // (heads * dim)
    n = int((np.asarray(batch.seqlens) > 0).sum())
    seg = np.asarray(batch.segment_ids)
    want = []
    for row in range(r):
        for s in range(1, seg[row].max() + 1):
            cols = np.flatnonzero(seg[row] == s)
            want.append((row * t + int(cols[0]), len(cols)))
    assert list(zip(q_off[:n].tolist(), q_len[:n].tolist(), strict=True)) == want
    assert (q_len[n:] == 0).all() and (q_off[n:] == r * t).all()  # the rest: empty, at the end


def test_the_installed_jax_has_the_entry_point():
    assert cudnn_packed.api_unavailable() is None


def test_a_missing_keyword_is_reported(monkeypatch):
    fake = types.SimpleNamespace(dot_product_attention=lambda query, key, value, *, scale=1.0: None,
                                 MaskType=types.SimpleNamespace(PADDING_CAUSAL=3))
    monkeypatch.setattr(cudnn_packed.importlib, "import_module", lambda name: fake)
    cudnn_packed._api.cache_clear()
    try:
        why = cudnn_packed.api_unavailable()
        assert why is not None and "q_offsets" in why
        with pytest.raises(RuntimeError, match="lacks"):
            cudnn_packed.cudnn_packed_attention(*(jnp.zeros((1, 8, 2, 8)),) * 3, jnp.ones((1, 8), jnp.int32),
                                                jnp.zeros((1, 3), jnp.int32), jnp.zeros((1, 2), jnp.int32))
    finally:
        cudnn_packed._api.cache_clear()


def test_a_missing_module_is_reported(monkeypatch):
    def gone(name: str) -> None:
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(cudnn_packed.importlib, "import_module", gone)
    cudnn_packed._api.cache_clear()
    try:
        assert "does not import" in cudnn_packed.api_unavailable()
    finally:
        cudnn_packed._api.cache_clear()


def test_device_check_is_pure():
    assert "CUDA GPU" in cudnn_packed.device_unavailable("cpu", None)
    assert "Hopper" in cudnn_packed.device_unavailable("gpu", 8.0)
    assert cudnn_packed.device_unavailable("gpu", 9.0) is None
    assert cudnn_packed.unavailable("cpu") is not None
