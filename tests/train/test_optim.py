"""Schedules and AdamW against hand values, the PyTorch reference loop and torch.optim.AdamW."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from f2jax.train.optim import make_optimizer, make_schedule

PEAK, WARM, TOTAL, MIN = 1e-3, 10, 110, 1e-7


def lr_at(schedule, step):
    return float(schedule(step))


def test_cosine_key_steps():
    s = make_schedule("cosine", peak_lr=PEAK, warmup_steps=WARM, total_steps=TOTAL, min_lr=MIN)
    assert lr_at(s, 0) == 0.0  # the reference's first update runs at lr 0
    np.testing.assert_allclose(lr_at(s, 1), PEAK / WARM, rtol=1e-6)
    np.testing.assert_allclose(lr_at(s, 5), PEAK / 2, rtol=1e-6)
    np.testing.assert_allclose(lr_at(s, WARM), PEAK, rtol=1e-6)
    np.testing.assert_allclose(lr_at(s, 60), PEAK / 2, rtol=1e-5)  # half way through the decay
    np.testing.assert_allclose(lr_at(s, 85), PEAK * 0.5 * (1 + math.cos(math.pi * 0.75)), rtol=1e-5)
    np.testing.assert_allclose(lr_at(s, TOTAL), MIN, rtol=1e-6)  # cosine reaches 0 -> floor
    for past in (TOTAL + 1, TOTAL + 50, 10 * TOTAL):
        np.testing.assert_allclose(lr_at(s, past), MIN, rtol=1e-6)


def test_floor_applies_during_warmup_and_decay():
    s = make_schedule("cosine", peak_lr=PEAK, warmup_steps=WARM, total_steps=TOTAL, min_lr=2e-4)
    assert lr_at(s, 0) == 0.0
    np.testing.assert_allclose(lr_at(s, 1), 2e-4, rtol=1e-6)
    np.testing.assert_allclose(lr_at(s, 3), 3e-4, rtol=1e-6)
    np.testing.assert_allclose(lr_at(s, TOTAL - 1), 2e-4, rtol=1e-6)


def test_constant_with_warmup():
    s = make_schedule("constant", peak_lr=PEAK, warmup_steps=WARM, total_steps=TOTAL, min_lr=MIN)
    assert lr_at(s, 0) == 0.0
    np.testing.assert_allclose(lr_at(s, 5), PEAK / 2, rtol=1e-6)
    for step in (WARM, 60, TOTAL, 10 * TOTAL):
        np.testing.assert_allclose(lr_at(s, step), PEAK, rtol=1e-6)


@pytest.mark.parametrize("kind,warm,total", [("cosine", WARM, TOTAL), ("constant", WARM, TOTAL),
                                             ("cosine", 500, 3)])  # a smoke run of a recipe: warmup cut
def test_schedule_matches_reference_loop(kind, warm, total):
    """The lr each optimizer.step() sees in the PyTorch loop: HF scheduler + floor after step."""
    import torch
    import transformers

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    if kind == "cosine":
        sched = transformers.get_cosine_schedule_with_warmup(opt, warm, total)
    else:
        sched = transformers.get_constant_schedule_with_warmup(opt, warm)
    mine = make_schedule(kind, peak_lr=PEAK, warmup_steps=warm, total_steps=total, min_lr=MIN)
    seen = []
    for _ in range(total):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        if opt.param_groups[0]["lr"] < MIN:
            opt.param_groups[0]["lr"] = MIN
    ours = np.asarray(jax.vmap(mine)(jnp.arange(total)))
    np.testing.assert_allclose(ours, seen, rtol=1e-5, atol=1e-12)


# ---- optimiser ------------------------------------------------------------------------------
def _problem(n=12, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "w": rng.normal(size=(4, 3)).astype(np.float32),
        "b": rng.normal(size=(3,)).astype(np.float32),
    }
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = rng.normal(size=(n, 3)).astype(np.float32)
    return params, x, y


def _loss(params, x, y):
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def _run(tx, params, batches):
    @jax.jit
    def step(params, state, x, y):
        updates, state = tx.update(jax.grad(_loss)(params, x, y), state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for x, y in batches:
        params, state = step(params, state, x, y)
    return params


def test_grad_accumulation_equals_big_batch():
    params, x, y = _problem(n=24)
    sched = make_schedule("cosine", peak_lr=0.05, warmup_steps=1, total_steps=4)
    k = 3
    # clip_norm small enough to clip: clipping must act on the averaged gradient.
    big = make_optimizer(sched, clip_norm=0.3, weight_decay=0.1)
    acc = make_optimizer(sched, clip_norm=0.3, weight_decay=0.1, grad_accum=k)
    big_batches = [(x[:12], y[:12]), (x[12:], y[12:])]
    micro = [(bx[i::k], by[i::k]) for bx, by in big_batches for i in range(k)]
    want = _run(big, params, big_batches)
    got = _run(acc, params, micro)
    for name in params:
        assert not np.allclose(want[name], params[name])
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-6)


def _torch_adamw(params, batches, lrs, *, weight_decay, decay_bias, clip):
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.tensor(params["w"]))
    b = torch.nn.Parameter(torch.tensor(params["b"]))
    groups = [{"params": [w]}, {"params": [b], "weight_decay": weight_decay if decay_bias else 0}]
    opt = torch.optim.AdamW(groups, lr=lrs[0], betas=(0.9, 0.98), weight_decay=weight_decay)
    for (x, y), lr in zip(batches, lrs, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        loss = ((torch.tensor(x) @ w + b - torch.tensor(y)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([w, b], clip)
        opt.step()
    return {"w": w.detach().numpy(), "b": b.detach().numpy()}


@pytest.mark.parametrize("decay_mask", ["all", "matrices"])
def test_adamw_matches_torch(decay_mask):
    params, x, y = _problem(n=8, seed=1)
    sched = make_schedule("cosine", peak_lr=0.05, warmup_steps=2, total_steps=6)
    lrs = [float(sched(i)) for i in range(6)]
    batches = [(x + 0.1 * i, y - 0.1 * i) for i in range(6)]
    for clip in (1.0, 0.2):  # 0.2 makes torch and optax both clip
        tx = make_optimizer(sched, weight_decay=0.5, clip_norm=clip, decay_mask=decay_mask)
        got = _run(tx, params, batches)
        want = _torch_adamw(
            params, batches, lrs, weight_decay=0.5, decay_bias=decay_mask == "all", clip=clip
        )
        for name in params:
            np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-6)


def test_decay_mask_matrices_leaves_vectors_undecayed():
    params = {"w": jnp.ones((2, 2)), "scale": jnp.ones((2,))}
    zeros = jax.tree.map(jnp.zeros_like, params)
    tx = make_optimizer(1.0, weight_decay=0.1, decay_mask="matrices")
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_array_equal(updates["scale"], 0.0)
    tx = make_optimizer(1.0, weight_decay=0.1, decay_mask="all")
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["scale"], -0.1 * np.ones(2), rtol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        make_schedule("linear", peak_lr=1e-3, warmup_steps=1, total_steps=2)
    with pytest.raises(ValueError):
        make_optimizer(1e-3, decay_mask="norms")
    with pytest.raises(ValueError):
        make_optimizer(1e-3, grad_accum=0)
