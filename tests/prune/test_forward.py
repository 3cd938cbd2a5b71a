"""The instrumented forward pass equals f2jax's model, so scores describe the real network."""

from __future__ import annotations

import numpy as np
from tiny_models import random_batch

import f2jax
from f2jax.prune.forward import Forward
from f2jax.prune.prune import data_mesh
from f2jax.prune.weights import read_checkpoint


def test_final_hidden_states_equal_the_model(tiny_random):
    ids, mask = random_batch(np.random.default_rng(0), 8, 24)
    ref = f2jax.load(tiny_random).hidden_states(ids, mask)
    cfg, tensors = read_checkpoint(tiny_random)
    for mesh in (None, data_mesh()):
        hidden, stats = Forward(cfg, tensors, mesh).run(ids, mask, stats=True)
        real = mask.astype(bool)
        assert np.abs(np.asarray(hidden) - ref)[real].max() <= 1e-5 * max(1.0, np.abs(ref[real]).max())
    layer = stats["layers"][0]
    assert layer["hidden"].shape == (2, 64) and layer["mlp"].shape == (128,) and layer["heads"].shape == (4,)
    assert 0 <= float(layer["cos_sum"]) <= float(layer["tokens"]) == mask.sum()
    assert np.all(stats["final"] > 0)


def test_skipping_layers_changes_only_what_it_should(tiny_random):
    cfg, tensors = read_checkpoint(tiny_random)
    fw = Forward(cfg, tensors)
    ids, mask = random_batch(np.random.default_rng(1), 4, 16)
    full, _ = fw.run(ids, mask)
    skipped, _ = fw.run(ids, mask, skip=[1])
    assert not np.allclose(np.asarray(full), np.asarray(skipped))
