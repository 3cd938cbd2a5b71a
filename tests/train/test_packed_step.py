"""Packed batches in the step: the same embeddings, loss and gradients as the padded batch of
the same texts, also through GradCache (each micro-batch packed into rows of its own)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from f2jax.data.batch import Batch
from f2jax.data.packing import pack_batch
from f2jax.losses import mrl_dims
from f2jax.model import ModelOptions, Qwen3Config, Qwen3Model
from f2jax.train.step import LossSpec, encode_batch, loss_and_grads

CFG = Qwen3Config(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8)


def make_batch(seed: int, b: int = 8, k: int = 3, lq: int = 8, lp: int = 16) -> Batch:
    """Mixed lengths, with a 1-token query and a passage of exactly the packed row length."""
    rng = np.random.default_rng(seed)

    def seqs(shape: tuple[int, ...], length: int) -> tuple[np.ndarray, np.ndarray]:
        lengths = rng.integers(1, length + 1, size=shape)
        lengths.reshape(-1)[0] = 1 if length == lq else length
        ids = rng.integers(1, CFG.vocab_size, size=(*shape, length)).astype(np.int32)
        mask = (np.arange(length) < lengths[..., None]).astype(np.int32)
        return ids * mask, mask

    (q, qm), (p, pm), (n, nm) = seqs((b,), lq), seqs((b,), lp), seqs((b, k), lp)
    return Batch(query_ids=q, query_mask=qm, passage_ids=p, passage_mask=pm, negative_ids=n, negative_mask=nm)


@pytest.fixture(scope="module")
def model():
    graphdef, state = nnx.split(Qwen3Model(CFG, ModelOptions(attention="xla"), rngs=nnx.Rngs(0)))
    return graphdef, nnx.to_pure_dict(state)


@pytest.mark.parametrize("row_multiple", [1, 4])
def test_packed_and_padded_give_same_embeddings(model, row_multiple):
    graphdef, params = model
    batch = make_batch(0)
    packed = pack_batch(batch, 16, row_multiple=row_multiple)
    assert packed.ids.shape[0] < 8 * 5  # fewer rows than texts: packing happened
    with jax.default_matmul_precision("highest"):
        ref = encode_batch(graphdef, params, jax.tree.map(jnp.asarray, batch))
        got = encode_batch(graphdef, params, jax.tree.map(jnp.asarray, packed))
    for a, b in zip(ref, got, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_packed_and_padded_give_same_loss_and_gradients(model, k):
    """k > 1: GradCache over micro-batches packed apart equals the whole padded batch."""
    graphdef, params = model
    batch = make_batch(k)
    packed = pack_batch(batch, 16, row_multiple=2, micro=k)
    assert packed.ids.shape[0] % (2 * k) == 0
    whole = LossSpec(mrl_dims=mrl_dims(CFG.hidden_size))
    accum = LossSpec(mrl_dims=whole.mrl_dims, grad_accum=k)
    fn = jax.jit(lambda p, b, spec: loss_and_grads(graphdef, p, b, None, spec, True), static_argnums=2)
    with jax.default_matmul_precision("highest"):
        m1, g1 = fn(params, jax.tree.map(jnp.asarray, batch), whole)
        m2, g2 = fn(params, jax.tree.map(jnp.asarray, packed), accum)
    for key in m1:
        np.testing.assert_allclose(float(m2[key]), float(m1[key]), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5 * max(1.0, float(np.abs(a).max())))
