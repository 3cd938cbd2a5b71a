"""Segment-aware attention for packed rows: each text attends only to itself (causally), in
every kernel that runs here, and the packed model equals the unpadded model per text."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from f2jax.model import ModelOptions, Qwen3Config, Qwen3Model
from f2jax.model import attention as attn
from f2jax.model.attention import (
    PACKED_FALLBACK,
    AttentionUnavailableError,
    choose_kernel,
    chunked_attention,
    resolve_packed,
    splash_attention,
    xla_attention,
)
from f2jax.model.triton_packed import triton_packed_attention

CFG = Qwen3Config(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8)
# Row 0: texts of 5, 1 and 10 tokens, then padding; row 1: one text of exactly T; row 2: padding only.
T = 24
SEGMENTS = [(5, 1, 10), (T,), ()]


def segments() -> tuple[np.ndarray, np.ndarray]:
    seg = np.zeros((len(SEGMENTS), T), np.int32)
    pos = np.zeros((len(SEGMENTS), T), np.int32)
    for r, lens in enumerate(SEGMENTS):
        c = 0
        for s, n in enumerate(lens, start=1):
            seg[r, c : c + n], pos[r, c : c + n] = s, np.arange(n)
            c += n
    return seg, pos


def qkv(seed: int = 0, hq: int = 4, hkv: int = 2, d: int = 8) -> tuple[jax.Array, ...]:
    ks = jax.random.split(jax.random.key(seed), 3)
    shape = (len(SEGMENTS), T)
    return (jax.random.normal(ks[0], (*shape, hq, d)), jax.random.normal(ks[1], (*shape, hkv, d)),
            jax.random.normal(ks[2], (*shape, hkv, d)))


KERNELS = {
    "xla": lambda q, k, v, seg: xla_attention(q, k, v, None, segment_ids=seg),
    "chunked": lambda q, k, v, seg: chunked_attention(q, k, v, None, block=8, segment_ids=seg),
    "splash": lambda q, k, v, seg: splash_attention(q, k, v, None, block=128, interpret=True, segment_ids=seg),
    # the GPU fallback for packed rows (Pallas-Triton, GQA by repeating k/v), interpreted on CPU
    "pallas_triton": lambda q, k, v, seg: triton_packed_attention(q, k, v, seg, block=16, interpret=True),
}


@pytest.mark.parametrize("name", list(KERNELS))
def test_each_text_attends_only_to_itself(name):
    seg, _ = segments()
    q, k, v = qkv()
    with jax.default_matmul_precision("highest"):
        out = np.asarray(KERNELS[name](q, k, v, jnp.asarray(seg)))
        for r, lens in enumerate(SEGMENTS):
            c = 0
            for n in lens:  # the text alone, unpadded, must give the same rows
                s = slice(c, c + n)
                alone = xla_attention(q[r : r + 1, s], k[r : r + 1, s], v[r : r + 1, s], jnp.asarray([n]))
                np.testing.assert_allclose(out[r, s], np.asarray(alone)[0], atol=2e-5, rtol=1e-5)
                c += n
        assert np.isfinite(out).all()  # padding rows/columns stay finite


@pytest.mark.parametrize("name", list(KERNELS))
def test_perturbing_one_text_changes_no_other(name):
    seg, _ = segments()
    q, k, v = qkv()
    base = np.asarray(KERNELS[name](q, k, v, jnp.asarray(seg)))
    hit = (slice(0, 1), slice(5, 6))  # the 1-token text of row 0
    q2, k2, v2 = (x.at[hit].add(3.0) for x in (q, k, v))
    out = np.asarray(KERNELS[name](q2, k2, v2, jnp.asarray(seg)))
    changed = np.abs(out - base).max(axis=(2, 3)) > 0
    expect = np.zeros_like(changed)
    expect[0, 5] = True
    real = seg > 0
    np.testing.assert_array_equal(changed & real, expect)


def _packed_model_vs_alone(impl: str) -> None:
    model = Qwen3Model(CFG, ModelOptions(attention=impl), rngs=nnx.Rngs(0))
    seg, pos = segments()
    ids = np.random.default_rng(0).integers(1, CFG.vocab_size, size=seg.shape).astype(np.int32) * (seg > 0)
    with jax.default_matmul_precision("highest"):
        packed = np.asarray(model(jnp.asarray(ids), jnp.asarray(seg > 0), segment_ids=jnp.asarray(seg),
                                  positions=jnp.asarray(pos)))
        for r, lens in enumerate(SEGMENTS):
            c = 0
            for n in lens:
                alone = model(jnp.asarray(ids[r : r + 1, c : c + n]), jnp.ones((1, n), jnp.int32))
                np.testing.assert_allclose(packed[r, c : c + n], np.asarray(alone)[0], atol=1e-5, rtol=1e-5)
                c += n


@pytest.mark.parametrize("impl", ["xla", "chunked", "dot_product"])
def test_packed_model_equals_each_text_alone(impl, monkeypatch):
    monkeypatch.setattr(attn, "CHUNK_QUERIES", 8)  # several blocks at T = 24
    _packed_model_vs_alone(impl)


NO_API = "jax._src.cudnn... lacks q_offsets"


@pytest.mark.parametrize("impl,backend,dtype,packed,why_not,kernel", [
    ("auto", "gpu", "bfloat16", False, None, "cudnn"),
    ("auto", "gpu", "bfloat16", True, None, "cudnn"),  # packed layout available
    ("auto", "gpu", "bfloat16", True, NO_API, PACKED_FALLBACK),  # private API gone: Pallas-Triton
    ("auto", "gpu", "bfloat16", False, NO_API, "cudnn"),  # padded batches never need it
    ("cudnn", "gpu", "float16", True, None, "cudnn"),
    ("auto", "gpu", "float32", True, NO_API, "xla"),  # cuDNN never chosen for fp32
    ("xla", "gpu", "bfloat16", True, NO_API, "xla"),
    ("chunked", "gpu", "bfloat16", True, None, "chunked"),
    ("auto", "tpu", "bfloat16", True, NO_API, "splash"),
    ("auto", "cpu", "bfloat16", True, NO_API, "xla"),
    ("auto", "cpu", "float32", False, None, "xla"),
])
def test_choose_kernel_per_backend_and_batch(impl, backend, dtype, packed, why_not, kernel):
    got, why = choose_kernel(impl, backend, dtype, 128, packed=packed, cudnn_packed=why_not)
    assert got == kernel
    assert (why == NO_API) == (kernel == PACKED_FALLBACK)


def test_explicit_cudnn_refuses_packed_rows_it_cannot_take():
    with pytest.raises(AttentionUnavailableError, match=r"model\.attention: 'cudnn' cannot take packed rows"):
        choose_kernel("cudnn", "gpu", "bfloat16", 128, packed=True, cudnn_packed=NO_API)
    with pytest.raises(AttentionUnavailableError, match=r"model\.attention: 'cudnn' cannot run here"):
        choose_kernel("cudnn", "cpu", "bfloat16", 128, packed=True)


def test_resolve_packed_keeps_the_cpu_kernel():
    for impl in ("auto", "xla", "chunked", "dot_product"):
        assert resolve_packed(impl, "cpu", "float32", 8) == ("xla" if impl == "auto" else impl)
