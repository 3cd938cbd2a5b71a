"""Batches through the layers together (`call_groups`) and in row chunks (`seq_chunk`)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec
from tiny_models import random_batch

from f2jax.model import ModelOptions, Qwen3Config, Qwen3Model, last_token_pool
from f2jax.model.partitioning import chunk_rows, unchunk_rows
from f2jax.model.qwen3 import seq_chunks
from f2jax.sharding import BATCH_AXES, make_mesh

CFG = Qwen3Config(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8)


def _groups(seed: int = 0) -> list[tuple[jax.Array, jax.Array]]:
    rng = np.random.default_rng(seed)
    shapes = ((8, 6), (8, 12), (24, 12))  # queries, passages, negatives: own widths and row counts
    return [tuple(map(jnp.asarray, random_batch(rng, b, t, vocab=CFG.vocab_size))) for b, t in shapes]


def _pooled_loss(m: Qwen3Model, groups, grouped: bool) -> jax.Array:
    reps = (m.call_groups(groups, last_token=True) if grouped
            else [last_token_pool(m(ids, mask), mask) for ids, mask in groups])
    w = jnp.linspace(-1.0, 1.0, CFG.hidden_size)
    return sum(jnp.sum(jnp.tanh(r * w)) for r in reps)


def _assert_close(out, ref) -> None:
    """Equal up to float32 rounding of reordered sums: within 1e-5 of the tensor's largest entry."""
    out, ref = np.asarray(out), np.asarray(ref)
    assert np.abs(out - ref).max() <= 1e-5 * max(float(np.abs(ref).max()), 1e-6)


def _grads(model: Qwen3Model, groups, grouped: bool, to_numpy: bool = True) -> list:
    g = jax.tree.leaves(nnx.to_pure_dict(nnx.grad(lambda m: _pooled_loss(m, groups, grouped))(model)))
    return [np.asarray(x) for x in g] if to_numpy else g


def test_call_groups_equals_separate_calls_in_values_and_gradients():
    model = Qwen3Model(CFG, ModelOptions(remat="full"), rngs=nnx.Rngs(0))
    groups = _groups()
    together = model.call_groups(groups)
    pooled = model.call_groups(groups, last_token=True)
    for (ids, mask), hidden, last in zip(groups, together, pooled, strict=True):
        alone = model(ids, mask)
        np.testing.assert_allclose(np.asarray(hidden), np.asarray(alone), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(last), np.asarray(last_token_pool(alone, mask)), rtol=1e-5, atol=1e-6)
    grouped, separate = _grads(model, groups, True), _grads(model, groups, False)
    assert max(float(np.abs(g).max()) for g in separate) > 0
    for g, s in zip(grouped, separate, strict=True):
        _assert_close(g, s)


def test_seq_chunks_takes_the_fewest_even_chunks():
    assert [seq_chunks(56, c) for c in (0, 56, 100, 8, 5, 4)] == [1, 1, 1, 7, 14, 14]
    assert seq_chunks(7, 4) == 7 and seq_chunks(6, 4) == 2 and seq_chunks(1, 1) == 1


def test_chunk_rows_keeps_each_devices_rows_and_is_undone():
    rows = jnp.arange(16)
    chunks = chunk_rows(rows, 2, shards=4)  # device d holds rows 4d .. 4d + 3
    np.testing.assert_array_equal(np.asarray(chunks), [[0, 1, 4, 5, 8, 9, 12, 13], [2, 3, 6, 7, 10, 11, 14, 15]])
    np.testing.assert_array_equal(np.asarray(unchunk_rows(chunks, shards=4)), np.asarray(rows))
    mesh = make_mesh(2, 4, 1)
    x = jax.device_put(jnp.arange(32 * 4.0).reshape(32, 4), NamedSharding(mesh, PartitionSpec(BATCH_AXES)))
    with jax.set_mesh(mesh):
        text = jax.jit(lambda v: unchunk_rows(chunk_rows(v, 2, 8) * 2, 8)).lower(x).compile().as_text()
    assert not re.search(r"all-to-all|all-gather|collective-permute|all-reduce", text)  # a local reshape


@pytest.mark.parametrize("remat", ["none", "full", "dots"])
def test_seq_chunk_on_a_mesh_equals_whole_batches(remat):
    mesh = make_mesh(2, 4, 1)  # 8 query rows: 1 per device; 24 negatives: 3 per device
    groups = _groups(1)

    def loss_and_grads(seq_chunk: int):
        graphdef, state = nnx.split(Qwen3Model(CFG, ModelOptions(remat=remat, seq_chunk=seq_chunk),
                                               rngs=nnx.Rngs(0)))

        def fn(st, g):
            model = nnx.merge(graphdef, st)
            return _pooled_loss(model, g, True), _grads(model, g, True, to_numpy=False)

        return jax.jit(fn), state

    with jax.set_mesh(mesh):
        sharded = jax.device_put(groups, NamedSharding(mesh, PartitionSpec(BATCH_AXES)))
        (whole, st), (chunked, _) = loss_and_grads(0), loss_and_grads(1)
        ref, out = whole(st, sharded), chunked(st, sharded)
        loops = [f.lower(st, sharded).as_text().count("stablehlo.while") for f in (whole, chunked)]
    assert loops[1] > loops[0]  # the negatives did go through in chunks
    for o, r in zip(jax.tree.leaves(out), jax.tree.leaves(ref), strict=True):
        _assert_close(o, r)


def test_seq_chunk_with_packed_rows_equals_whole_batch():
    rng = np.random.default_rng(2)
    ids = jnp.asarray(rng.integers(1, CFG.vocab_size, size=(6, 16)), jnp.int32)
    seg = jnp.asarray(np.repeat([[1] * 6 + [2] * 7 + [0] * 3], 6, axis=0))
    pos = jnp.asarray(np.repeat([list(range(6)) + list(range(7)) + [0] * 3], 6, axis=0))
    outs = [Qwen3Model(CFG, ModelOptions(seq_chunk=c), rngs=nnx.Rngs(0))(ids, None, segment_ids=seg, positions=pos)
            for c in (0, 2)]
    np.testing.assert_allclose(np.asarray(outs[1]), np.asarray(outs[0]), rtol=1e-5, atol=1e-6)


def test_options_reject_a_negative_seq_chunk():
    with pytest.raises(ValueError, match="seq_chunk"):
        ModelOptions(seq_chunk=-1)
