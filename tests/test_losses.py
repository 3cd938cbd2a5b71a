"""Losses against an independent float64 NumPy implementation of the recipe's formulas (docs/recipe.md)."""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from f2jax.losses import (
    distill_loss,
    hard_negative_loss,
    inbatch_loss,
    mrl_dims,
    mrl_weights,
)

TAU = 0.05
TOL = dict(rtol=1e-5, atol=1e-5)


# ---- NumPy reference (float64) -------------------------------------------------------------
def np_weights(dims):
    d = max(dims)
    by_size = sorted(dims, reverse=True)
    return [(dim, 1.0 / ((by_size.index(dim) + 1) * math.sqrt(d / dim))) for dim in dims]


def np_dw(dims, width):
    return [(width, 1.0)] if dims is None else np_weights(dims)


def np_norm(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def np_lse(a):
    m = a.max(-1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(-1, keepdims=True)))[..., 0]


def np_inbatch(q, p, dims=None, tau=TAU):
    q, p = q.astype(np.float64), p.astype(np.float64)
    total = 0.0
    for dim, w in np_dw(dims, q.shape[1]):
        logits = np_norm(q[:, :dim]) @ np_norm(p[:, :dim]).T / tau
        total += w * np.mean(np_lse(logits) - np.diag(logits))
    return total


def np_hard(q, p, negs, dims=None, tau=TAU):
    q, p, negs = (x.astype(np.float64) for x in (q, p, negs))
    cands = np.concatenate([p[:, None], negs], axis=1)
    total = 0.0
    for dim, w in np_dw(dims, q.shape[1]):
        logits = np.einsum("bd,bkd->bk", np_norm(q[:, :dim]), np_norm(cands[..., :dim])) / tau
        total += w * np.mean(np_lse(logits) - logits[:, 0])
    return total


def np_norm_backward(x, g):
    """Gradient w.r.t. x of n = x / |x| given dL/dn = g."""
    r = np.linalg.norm(x, axis=-1, keepdims=True)
    n = x / r
    return (g - n * (n * g).sum(-1, keepdims=True)) / r


def np_inbatch_grad(q, p, dims=None, tau=TAU, mask=None):
    """Analytic gradient; mask[i, j] = 1 where logit (i, j) carries gradient to passage j."""
    q, p = q.astype(np.float64), p.astype(np.float64)
    b = q.shape[0]
    mask = np.ones((b, b)) if mask is None else mask
    gq, gp = np.zeros_like(q), np.zeros_like(p)
    for dim, w in np_dw(dims, q.shape[1]):
        qn, pn = np_norm(q[:, :dim]), np_norm(p[:, :dim])
        logits = qn @ pn.T / tau
        soft = np.exp(logits - np_lse(logits)[:, None])
        g = w * (soft - np.eye(b)) / b  # dL/dlogits
        gq[:, :dim] += np_norm_backward(q[:, :dim], g @ pn / tau)
        gp[:, :dim] += np_norm_backward(p[:, :dim], (g * mask).T @ qn / tau)
    return gq, gp


def block_mask(b, shards):
    s = np.arange(b) // (b // shards)
    return (s[:, None] == s[None, :]).astype(np.float64)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ---- MRL dims and weights ------------------------------------------------------------------
def test_mrl_dims():
    assert mrl_dims(1024) == (8, 16, 32, 64, 128, 256, 512, 1024)
    assert mrl_dims(896) == (8, 16, 32, 64, 128, 256, 512, 896)
    assert mrl_dims(320) == (8, 16, 32, 64, 128, 256, 320)
    assert mrl_dims(8) == (8,)


def test_mrl_weights_table_d1024():
    weights = mrl_weights(mrl_dims(1024))
    largest_first = weights[::-1]
    table = [1, 0.354, 0.167, 0.088, 0.05, 0.029, 0.018, 0.011]
    np.testing.assert_allclose(largest_first, table, atol=6e-4)
    np.testing.assert_allclose(weights, [w for _, w in np_weights(mrl_dims(1024))], rtol=1e-12)
    # Order of the input does not change which dim gets which weight.
    shuffled = (64, 1024, 8, 512)
    assert dict(zip(shuffled, mrl_weights(shuffled), strict=True)) == dict(np_weights(shuffled))


# ---- values ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dims", [None, (8, 16, 32, 48)])
def test_inbatch_matches_numpy(dims):
    q, p = rand(12, 48, seed=1), rand(12, 48, seed=2)
    got = jax.jit(partial(inbatch_loss, mrl_dims=dims))(q, p)
    assert got.dtype == jnp.float32 and got.shape == ()
    np.testing.assert_allclose(float(got), np_inbatch(q, p, dims), **TOL)


@pytest.mark.parametrize("dims", [None, (8, 16, 32, 48)])
def test_hard_negative_matches_numpy(dims):
    q, p, negs = rand(6, 48, seed=3), rand(6, 48, seed=4), rand(6, 7, 48, seed=5)
    got = jax.jit(partial(hard_negative_loss, mrl_dims=dims))(q, p, negs)
    assert got.dtype == jnp.float32 and got.shape == ()
    np.testing.assert_allclose(float(got), np_hard(q, p, negs, dims), **TOL)


def test_temperature_is_used():
    q, p = rand(5, 16, seed=6), rand(5, 16, seed=7)
    np.testing.assert_allclose(
        float(jax.jit(partial(inbatch_loss, temperature=0.2))(q, p)),
        np_inbatch(q, p, tau=0.2),
        **TOL,
    )


def test_mrl_is_a_weighted_sum_of_truncated_losses():
    q, p = rand(8, 32, seed=8), rand(8, 32, seed=9)
    dims = mrl_dims(32)
    parts = [np_inbatch(q[:, :d], p[:, :d]) for d in dims]
    expect = sum(w * x for w, x in zip(mrl_weights(dims), parts, strict=True))
    np.testing.assert_allclose(
        float(jax.jit(partial(inbatch_loss, mrl_dims=dims))(q, p)), expect, **TOL
    )


@pytest.mark.parametrize("shape", [(4, 16), (4, 3, 16)])
def test_distill_matches_numpy(shape):
    student = rand(*shape, seed=10)
    teacher = rand(*shape[:-1], 24, seed=11)
    expect = np.mean((student.astype(np.float64) - teacher[..., :16]) ** 2)
    got = distill_loss(student, teacher)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), expect, **TOL)


def test_bfloat16_inputs_compute_in_float32():
    q, p, negs = rand(6, 32, seed=12), rand(6, 32, seed=13), rand(6, 3, 32, seed=14)
    bf = [jnp.asarray(x, jnp.bfloat16) for x in (q, p, negs)]
    up = [np.asarray(x.astype(jnp.float32)) for x in bf]
    got = jax.jit(inbatch_loss)(bf[0], bf[1])
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), np_inbatch(up[0], up[1]), **TOL)
    got = jax.jit(hard_negative_loss)(*bf)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), np_hard(*up), **TOL)
    assert distill_loss(bf[0], bf[1]).dtype == jnp.float32


def test_zero_vectors_give_finite_loss_and_grads():
    q, p, negs = rand(4, 16, seed=15), rand(4, 16, seed=16), rand(4, 2, 16, seed=17)
    q[0], p[1], negs[2, 1] = 0.0, 0.0, 0.0
    for fn, args in [(inbatch_loss, (q, p)), (hard_negative_loss, (q, p, negs))]:
        value, grads = jax.jit(jax.value_and_grad(partial(fn, mrl_dims=(8, 16)), argnums=(0, 1)))(
            *args
        )
        assert np.isfinite(float(value))
        assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        inbatch_loss(rand(4, 8), rand(5, 8))
    with pytest.raises(ValueError):
        inbatch_loss(rand(4, 8), rand(4, 8), mrl_dims=(8, 16))
    with pytest.raises(ValueError):
        distill_loss(rand(4, 8), rand(4, 4))


# ---- gradients ------------------------------------------------------------------------------
def test_numpy_gradient_reference_matches_finite_differences():
    """Validates the analytic reference itself (float64 central differences)."""
    q, p = rand(3, 8, seed=18).astype(np.float64), rand(3, 8, seed=19).astype(np.float64)
    dims, h = (4, 8), 1e-6
    gq, gp = np_inbatch_grad(q, p, dims)
    for x, g in ((q, gq), (p, gp)):
        fd = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            old = x[idx]
            x[idx] = old + h
            up = np_inbatch(q, p, dims)
            x[idx] = old - h
            down = np_inbatch(q, p, dims)
            x[idx] = old
            fd[idx] = (up - down) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dims", [None, (8, 16, 32)])
def test_inbatch_grad_matches_numpy(dims):
    q, p = rand(8, 32, seed=20), rand(8, 32, seed=21)
    gq, gp = jax.jit(jax.grad(partial(inbatch_loss, mrl_dims=dims), argnums=(0, 1)))(q, p)
    rq, rp = np_inbatch_grad(q, p, dims)
    np.testing.assert_allclose(np.asarray(gq), rq, **TOL)
    np.testing.assert_allclose(np.asarray(gp), rp, **TOL)


def test_no_passage_gradient_queries_only():
    """passage_gradient=False, num_shards=None: the multi-GPU reference, queries only."""
    q, p = rand(8, 32, seed=22), rand(8, 32, seed=23)
    fn = partial(inbatch_loss, mrl_dims=(8, 32), passage_gradient=False)
    value, (gq, gp) = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))(q, p)
    np.testing.assert_allclose(float(value), np_inbatch(q, p, (8, 32)), **TOL)
    rq, _ = np_inbatch_grad(q, p, (8, 32))
    np.testing.assert_allclose(np.asarray(gq), rq, **TOL)
    np.testing.assert_array_equal(np.asarray(gp), 0.0)


def test_block_diagonal_passage_gradient():
    q, p = rand(8, 32, seed=24), rand(8, 32, seed=25)
    fn = partial(inbatch_loss, mrl_dims=(8, 32), passage_gradient=False, num_shards=4)
    value, (gq, gp) = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))(q, p)
    np.testing.assert_allclose(float(value), np_inbatch(q, p, (8, 32)), **TOL)
    rq, rp = np_inbatch_grad(q, p, (8, 32), mask=block_mask(8, 4))
    np.testing.assert_allclose(np.asarray(gq), rq, **TOL)
    np.testing.assert_allclose(np.asarray(gp), rp, **TOL)
    # One shard is the whole batch: identical to the full gradient.
    _, (_, gp1) = jax.jit(jax.value_and_grad(partial(fn, num_shards=1), argnums=(0, 1)))(q, p)
    np.testing.assert_allclose(np.asarray(gp1), np_inbatch_grad(q, p, (8, 32))[1], **TOL)


# ---- 8 simulated devices --------------------------------------------------------------------
def _mesh8():
    if jax.device_count() < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/conftest.py)")
    return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


@pytest.mark.parametrize("num_shards", [None, 8])
def test_inbatch_sharded_equals_single_device(num_shards):
    mesh = _mesh8()
    q, p = rand(16, 32, seed=26), rand(16, 32, seed=27)
    dims = (8, 16, 32)
    passage_gradient = num_shards is None  # None: exact global loss; 8: one block per device
    fn = partial(
        inbatch_loss, mrl_dims=dims, passage_gradient=passage_gradient, num_shards=num_shards
    )
    step = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))
    one = jax.devices()[0]
    v1, (gq1, gp1) = step(jax.device_put(q, one), jax.device_put(p, one))
    sharding = NamedSharding(mesh, P("data"))
    qs, ps = jax.device_put(q, sharding), jax.device_put(p, sharding)
    assert len(qs.sharding.device_set) == 8
    v8, (gq8, gp8) = step(qs, ps)
    np.testing.assert_allclose(float(v8), float(v1), **TOL)
    np.testing.assert_allclose(np.asarray(gq8), np.asarray(gq1), **TOL)
    np.testing.assert_allclose(np.asarray(gp8), np.asarray(gp1), **TOL)
    mask = None if num_shards is None else block_mask(16, num_shards)
    rq, rp = np_inbatch_grad(q, p, dims, mask=mask)
    np.testing.assert_allclose(float(v8), np_inbatch(q, p, dims), **TOL)
    np.testing.assert_allclose(np.asarray(gq8), rq, **TOL)
    np.testing.assert_allclose(np.asarray(gp8), rp, **TOL)
