"""The jitted train step: mesh invariance, GradCache accumulation, distillation."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from f2jax.data.batch import TEACHER_FIELDS, TOKEN_FIELDS, Batch
from f2jax.losses import distill_loss, mrl_dims
from f2jax.model import ModelOptions, Qwen3Config, Qwen3Model
from f2jax.sharding import batch_sharding, make_mesh, param_shardings
from f2jax.train.optim import make_optimizer, make_schedule
from f2jax.train.state import init_state, state_shardings
from f2jax.train.step import LossSpec, encode_batch, train_step

CFG = Qwen3Config(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8)


def make_batch(seed: int, b: int = 8, k: int = 3, lq: int = 8, lp: int = 16) -> Batch:
    rng = np.random.default_rng(seed)

    def seqs(shape, length):
        lengths = rng.integers(2, length + 1, size=shape)
        ids = rng.integers(0, CFG.vocab_size, size=(*shape, length)).astype(np.int32)
        mask = (np.arange(length) < lengths[..., None]).astype(np.int32)
        return ids * mask, mask

    q, qm = seqs((b,), lq)
    p, pm = seqs((b,), lp)
    n, nm = seqs((b, k), lp)
    return Batch(query_ids=q, query_mask=qm, passage_ids=p, passage_mask=pm, negative_ids=n, negative_mask=nm)


def run_step(mesh, batch, spec, *, inbatch=True, teacher=None, steps=1, opts=None):
    model = Qwen3Model(CFG, opts or ModelOptions(), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)
    tx = make_optimizer(make_schedule("constant", peak_lr=1e-4, warmup_steps=0, total_steps=10))
    shardings = state_shardings(params, param_shardings(state, mesh), tx, mesh)
    params = jax.device_put(params, shardings.params)
    train_state = init_state(params, tx, shardings)
    batch_sh = jax.tree.map(lambda v: batch_sharding(mesh, v.ndim), batch)
    fn = jax.jit(functools.partial(train_step, graphdef=graphdef, tx=tx, spec=spec, inbatch=inbatch),
                 in_shardings=(shardings, batch_sh, None), out_shardings=(shardings, None),
                 donate_argnums=0)
    arrays = jax.device_put(batch, batch_sh)
    losses = []
    for _ in range(steps):
        train_state, metrics = fn(train_state, arrays, teacher)
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(train_state.params), metrics


def _max_diff(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_step_on_2x2x2_mesh_equals_one_device():
    batch = make_batch(0)
    spec = LossSpec(mrl_dims=mrl_dims(CFG.hidden_size))
    one = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    eight = make_mesh(2, 2, 2)
    loss1, params1, _ = run_step(one, batch, spec, steps=2)
    loss8, params8, _ = run_step(eight, batch, spec, steps=2)
    np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
    assert _max_diff(params8, params1) <= 1e-5
    initial = nnx.to_pure_dict(nnx.state(Qwen3Model(CFG, ModelOptions(), rngs=nnx.Rngs(0))))
    assert _max_diff(params1, initial) > 1e-5  # the step did move the parameters


def test_seq_chunk_step_on_a_mesh_equals_one_device():
    batch = make_batch(3)  # 24 negatives: 6 per device of a 2x2x2 mesh, run 2 at a time
    spec = LossSpec(mrl_dims=mrl_dims(CFG.hidden_size))
    loss1, params1, _ = run_step(make_mesh(1, 1, 1, devices=jax.devices()[:1]), batch, spec)
    loss8, params8, _ = run_step(make_mesh(2, 2, 2), batch, spec, opts=ModelOptions(remat="full", seq_chunk=2))
    np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
    assert _max_diff(params8, params1) <= 1e-5


@pytest.mark.parametrize("k", [2, 4])
def test_gradcache_accumulation_equals_big_batch(k):
    batch = make_batch(1)
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    base = LossSpec(mrl_dims=(8, 32))
    loss1, params1, m1 = run_step(mesh, batch, base)
    lossk, paramsk, mk = run_step(mesh, batch, LossSpec(mrl_dims=(8, 32), grad_accum=k))
    np.testing.assert_allclose(lossk, loss1, rtol=1e-5)
    np.testing.assert_allclose(float(mk["grad_norm"]), float(m1["grad_norm"]), rtol=1e-4)
    assert _max_diff(paramsk, params1) <= 1e-5


def test_gradcache_on_mesh_equals_single_device():
    batch = make_batch(2)
    spec = LossSpec(grad_accum=2)
    loss1, params1, _ = run_step(make_mesh(1, 1, 1, devices=jax.devices()[:1]), batch, LossSpec())
    loss8, params8, _ = run_step(make_mesh(4, 1, 2), batch, spec)
    np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
    assert _max_diff(params8, params1) <= 1e-5


def test_distillation_term_is_mse_against_teacher():
    batch = make_batch(3)
    teacher_model = Qwen3Model(CFG, ModelOptions(), rngs=nnx.Rngs(7))
    t_graphdef, t_state = nnx.split(teacher_model)
    t_params = nnx.to_pure_dict(t_state)
    spec = LossSpec(kd_weight=0.5)
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    _, _, metrics = run_step(mesh, batch, spec, teacher=None)
    with_teacher = functools.partial(run_step, mesh, batch, spec)
    # teacher graphdef is static: close over it the way the trainer does
    student = Qwen3Model(CFG, ModelOptions(), rngs=nnx.Rngs(0))
    s_graphdef, s_state = nnx.split(student)
    jb = jax.tree.map(jnp.asarray, batch)
    s_reps = encode_batch(s_graphdef, nnx.to_pure_dict(s_state), jb)
    t_reps = encode_batch(t_graphdef, t_params, jb)
    expected_kd = sum(float(np.mean((np.asarray(s) - np.asarray(t)) ** 2)) for s, t in zip(s_reps, t_reps, strict=True))
    assert abs(float(distill_loss(s_reps[0], t_reps[0])) - float(np.mean(
        (np.asarray(s_reps[0]) - np.asarray(t_reps[0])) ** 2))) < 1e-6
    _, _, kd_metrics = with_teacher(teacher=(t_graphdef, t_params))
    np.testing.assert_allclose(float(kd_metrics["loss_kd"]), expected_kd, rtol=1e-5)
    np.testing.assert_allclose(float(kd_metrics["loss"]),
                               float(metrics["loss"]) + 0.5 * expected_kd, rtol=1e-5)


def test_batch_fields_are_the_batch_contract():
    assert {f.name for f in dataclasses.fields(Batch)} == {*TOKEN_FIELDS, *TEACHER_FIELDS}
    batch = make_batch(0)
    assert all(getattr(batch, key) is not None for key in TOKEN_FIELDS) and batch.teacher is None
