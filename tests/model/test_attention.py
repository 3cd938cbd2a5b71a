"""Attention kernels (`model.attention`): resolution of `auto`, loud explicit choices, and the
`chunked` and Pallas `splash` (interpret mode, CPU) kernels against `xla` in float32."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from f2jax.model import ModelOptions, Qwen3Config, Qwen3Model
from f2jax.model import attention as attn
from f2jax.model.attention import (
    AttentionUnavailableError,
    attend,
    chunked_attention,
    decide_attention,
    resolve_attention,
    splash_attention,
    xla_attention,
)
from f2jax.sharding import make_mesh


def _inputs(b: int, t: int, hq: int, hkv: int, d: int, seed: int = 0):
    ks = jax.random.split(jax.random.key(seed), 4)
    q = jax.random.normal(ks[0], (b, t, hq, d), jnp.float32)
    k = jax.random.normal(ks[1], (b, t, hkv, d), jnp.float32)
    v = jax.random.normal(ks[2], (b, t, hkv, d), jnp.float32)
    lengths = jnp.asarray([t, t - 77, 5, 1][:b], jnp.int32)  # right padding, not block multiples
    w = jax.random.normal(ks[3], (b, t, hq, d), jnp.float32)
    return q, k, v, lengths, w


def dense_reference(q, k, v, lengths):
    """Full [T, T] causal softmax attention over each row's real keys, written out for the tests
    alone (padded query rows see the real keys, so they stay finite and comparable)."""
    b, t, hq, d = q.shape
    rep = hq // k.shape[2]
    k, v = jnp.repeat(k, rep, axis=2), jnp.repeat(v, rep, axis=2)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d)
    pos = jnp.arange(t)
    causal = pos[None, :] <= pos[:, None]
    visible = causal[None] & (pos[None, None, :] < lengths[:, None, None])
    logits = jnp.where(visible[:, None], logits, -jnp.inf)
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)


def _value_and_grads(fn, q, k, v, lengths, w):
    """Outputs and d(sum(out * w))/d(q, k, v), padded query rows included (they must agree too)."""
    def loss(q, k, v):
        out = fn(q, k, v, lengths)
        return jnp.sum(out * w), out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(q, k, v)
    return out, grads


def _assert_close(fn, q, k, v, lengths, w, tol=2e-5, ref_fn=xla_attention):
    with jax.default_matmul_precision("highest"):
        ref, ref_g = _value_and_grads(ref_fn, q, k, v, lengths, w)
        out, g = _value_and_grads(fn, q, k, v, lengths, w)
    assert np.abs(np.asarray(out - ref)).max() <= tol * np.abs(np.asarray(ref)).max()
    for name, a, b in zip("qkv", ref_g, g, strict=True):
        scale = np.abs(np.asarray(a)).max()
        assert np.abs(np.asarray(a - b)).max() <= tol * scale, name


# ---------------------------------------------------------------- resolution


def test_auto_resolves_per_backend():
    assert decide_attention("auto", "cpu", "float32", 128) == ("xla", None)
    assert decide_attention("auto", "cpu", "bfloat16", 128) == ("xla", None)
    assert decide_attention("auto", "tpu", "bfloat16", 128) == ("splash", None)
    assert decide_attention("auto", "tpu", "float32", 64) == ("splash", None)
    assert decide_attention("auto", "gpu", "bfloat16", 128) == ("cudnn", None)
    assert decide_attention("auto", "gpu", "float16", 64) == ("cudnn", None)


def test_auto_on_gpu_falls_back_to_xla_where_cudnn_cannot_take_the_call():
    kernel, why = decide_attention("auto", "gpu", "float32", 128)
    assert kernel == "xla" and "float32" in why
    kernel, why = decide_attention("auto", "gpu", "bfloat16", 256, head_dim_max=128)
    assert kernel == "xla" and "head_dim" in why
    assert decide_attention("auto", "gpu", "bfloat16", 256, head_dim_max=256) == ("cudnn", None)


def test_auto_on_this_cpu_picks_xla_and_logs_once(caplog):
    resolve_attention.cache_clear()
    with caplog.at_level(logging.INFO, logger="f2jax.model.attention"):
        assert resolve_attention("auto", jax.default_backend(), "float32", 16) == "xla"
        assert resolve_attention("auto", jax.default_backend(), "float32", 16) == "xla"
    lines = [r.getMessage() for r in caplog.records if "model.attention" in r.getMessage()]
    assert lines == ["model.attention: auto -> xla on cpu (float32 compute)"]


@pytest.mark.parametrize("impl,backend,dtype,head_dim,match", [
    ("cudnn", "gpu", "float32", 128, "float32"),
    ("cudnn", "gpu", "bfloat16", 12, "head_dim"),
    ("cudnn", "cpu", "bfloat16", 128, "CUDA GPU"),
    ("splash", "cpu", "bfloat16", 128, "TPU"),
    ("splash", "gpu", "bfloat16", 128, "TPU"),
])
def test_explicit_choices_that_cannot_run_fail_loudly(impl, backend, dtype, head_dim, match):
    with pytest.raises(AttentionUnavailableError, match=f"model.attention: '{impl}'.*{match}"):
        decide_attention(impl, backend, dtype, head_dim)


def test_explicit_choices_that_can_run_are_kept():
    for impl in ("xla", "chunked", "dot_product"):
        for backend in ("cpu", "gpu", "tpu"):
            assert decide_attention(impl, backend, "float32", 128) == (impl, None)
    assert decide_attention("cudnn", "gpu", "bfloat16", 128) == ("cudnn", None)
    assert decide_attention("splash", "tpu", "float32", 128) == ("splash", None)


def test_attend_refuses_splash_and_cudnn_on_cpu():
    q, k, v, lengths, _ = _inputs(1, 8, 2, 1, 8)
    for impl in ("splash", "cudnn"):
        with pytest.raises(AttentionUnavailableError, match="model.attention"):
            attend(q, k, v, lengths, impl)
    with pytest.raises(ValueError, match="model.attention"):
        decide_attention("flash", "cpu", "float32", 8)


def test_model_default_is_auto_and_equals_xla_on_cpu():
    assert ModelOptions().attention == "auto"
    cfg = Qwen3Config(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 300, (2, 12)), jnp.int32)
    mask = jnp.asarray(np.arange(12)[None] < np.array([[12], [7]]), jnp.int32)
    auto = Qwen3Model(cfg, ModelOptions(), rngs=nnx.Rngs(0))(ids, mask)
    xla = Qwen3Model(cfg, ModelOptions(attention="xla"), rngs=nnx.Rngs(0))(ids, mask)
    np.testing.assert_array_equal(np.asarray(auto), np.asarray(xla))


# ---------------------------------------------------------------- block-causal xla and chunked


@pytest.mark.parametrize("t,hq,hkv,d,block", [
    (100, 4, 4, 16, 32),  # 4 blocks, last one partial
    (96, 4, 2, 16, 32),  # exact multiple
    (90, 8, 2, 8, 64),  # GQA 4
    (20, 2, 1, 8, None),  # one block (xla_block(20) = 64)
    (200, 4, 2, 16, None),  # xla_block(200) = 64: 4 blocks, the last partial
])
def test_block_causal_xla_equals_the_dense_reference_with_gradients(t, hq, hkv, d, block):
    q, k, v, lengths, w = _inputs(3, t, hq, hkv, d, seed=t)
    lengths = jnp.clip(lengths, 1, t).at[2].set(t // 3)
    _assert_close(lambda *a: xla_attention(*a, block=block), q, k, v, lengths, w, tol=1e-5,
                  ref_fn=dense_reference)


def test_xla_block_sizes():
    assert [attn.xla_block(t) for t in (20, 128, 512, 1024, 8192)] == [64, 64, 64, 64, 512]



@pytest.mark.parametrize("t,hq,hkv,d,block", [
    (100, 4, 4, 16, 32),  # 4 blocks, last one partial
    (96, 4, 2, 16, 32),  # exact multiple
    (90, 8, 2, 8, 64),  # GQA 4
    (20, 2, 1, 8, 64),  # shorter than a block: plain xla
])
def test_chunked_equals_xla_with_gradients(t, hq, hkv, d, block):
    q, k, v, lengths, w = _inputs(3, t, hq, hkv, d, seed=t)
    lengths = jnp.minimum(lengths, t).at[2].set(t // 3)
    _assert_close(lambda *a: chunked_attention(*a, block=block), q, k, v, lengths, w, tol=1e-5)


def test_chunked_model_equals_xla_model(monkeypatch):
    monkeypatch.setattr(attn, "CHUNK_QUERIES", 8)
    cfg = Qwen3Config(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    ids = jnp.asarray(np.random.default_rng(1).integers(0, 300, (2, 21)), jnp.int32)
    mask = jnp.asarray(np.arange(21)[None] < np.array([[21], [10]]), jnp.int32)

    def grads(impl):
        model = Qwen3Model(cfg, ModelOptions(attention=impl, remat="full"), rngs=nnx.Rngs(0))
        return nnx.grad(lambda m: jnp.sum(m(ids, mask)[mask.astype(bool)] ** 2))(model)

    ref, out = grads("xla"), grads("chunked")
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(out), strict=True):  # float32 sums reordered
        assert np.abs(np.asarray(a - b)).max() <= 1e-4 * np.abs(np.asarray(a)).max()


# ---------------------------------------------------------------- splash (Pallas interpret mode)


@pytest.mark.parametrize("t,hq,hkv,d", [
    (200, 2, 2, 64),  # GQA 1, T padded to 256
    (256, 4, 2, 128),  # GQA 2, head_dim 128
    (130, 4, 1, 64),  # GQA 4, T padded to 256
])
def test_splash_interpret_equals_xla(t, hq, hkv, d):
    q, k, v, lengths, w = _inputs(2, t, hq, hkv, d, seed=d + hq)
    _assert_close(lambda *a: splash_attention(*a, block=128, interpret=True), q, k, v, lengths, w)


def test_splash_interpret_under_mesh_shards_batch_and_heads():
    """shard_map over (data, fsdp) x tensor on 8 CPU devices; 1 KV head < tensor: repeated."""
    q, k, v, _, w = _inputs(4, 128, 4, 1, 64, seed=3)
    lengths = jnp.asarray([128, 51, 5, 100], jnp.int32)
    with jax.set_mesh(make_mesh(2, 2, 2)):
        _assert_close(lambda *a: splash_attention(*a, block=128, interpret=True), q, k, v, lengths, w)
