"""Parity of the Flax Qwen3 backbone with transformers' Qwen3Model on tiny random checkpoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from tiny_models import hf_hidden_states, make_hf_model, random_batch
from transformers import Qwen3Config as HFQwen3Config
from transformers import Qwen3ForCausalLM

from f2jax.hf import load_model
from f2jax.model import ModelOptions, Qwen3Config, Qwen3Model, last_token_index, last_token_pool

CONFIGS = {
    "gqa1": dict(num_attention_heads=4, num_key_value_heads=4),
    "gqa2": dict(num_attention_heads=4, num_key_value_heads=2),
    "gqa4_headdim": dict(num_attention_heads=8, num_key_value_heads=2, head_dim=24),
    "bias_yarn": dict(attention_bias=True, rope_scaling={
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128}),
    "linear_rope_3layers": dict(num_hidden_layers=3, rope_scaling={"rope_type": "linear", "factor": 2.0}),
}


def _relative_max_error(out: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    real = mask.astype(bool)
    return float(np.abs(out - ref)[real].max() / np.abs(ref[real]).max())


def _run(model: Qwen3Model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)).astype(jnp.float32))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_float32_parity(tmp_path, name):
    path, hf = make_hf_model(tmp_path / name, with_tokenizer=False, **CONFIGS[name])
    ids, mask = random_batch(np.random.default_rng(1), batch=5, length=24)
    ref = hf_hidden_states(hf, ids, mask)
    out = _run(load_model(path), ids, mask)
    assert _relative_max_error(out, ref, mask) <= 1e-4


@pytest.mark.parametrize("tied", [True, False])
def test_causal_lm_checkpoint_parity(tmp_path, tied):
    """Qwen3ForCausalLM checkpoints (`model.` prefix, lm_head present when untied) load as the backbone."""
    cfg = HFQwen3Config(vocab_size=1000, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=1, head_dim=32,
                        tie_word_embeddings=tied)
    torch.manual_seed(3)
    lm = Qwen3ForCausalLM(cfg).eval()
    lm.save_pretrained(tmp_path, safe_serialization=True)
    ids, mask = random_batch(np.random.default_rng(2), batch=3, length=16, vocab=1000)
    ref = hf_hidden_states(lm.model, ids, mask)
    assert _relative_max_error(_run(load_model(tmp_path), ids, mask), ref, mask) <= 1e-4


def test_bfloat16_parity(tmp_path):
    path, hf = make_hf_model(tmp_path, with_tokenizer=False)
    ids, mask = random_batch(np.random.default_rng(4), batch=4, length=32)
    ref = hf_hidden_states(hf, ids, mask)
    model = load_model(path, ModelOptions(param_dtype="bfloat16", dtype="bfloat16"))
    assert model.layers.mlp.up_proj.kernel[...].dtype == jnp.bfloat16
    out = _run(model, ids, mask)
    real = mask.astype(bool)
    rel = np.linalg.norm(out - ref, axis=-1)[real] / np.linalg.norm(ref, axis=-1)[real]
    assert rel.max() <= 2e-2
    # float32 parameters with bfloat16 compute land in the same band
    mixed = _run(load_model(path, ModelOptions(param_dtype="float32", dtype="bfloat16")), ids, mask)
    rel_mixed = np.linalg.norm(mixed - ref, axis=-1)[real] / np.linalg.norm(ref, axis=-1)[real]
    assert rel_mixed.max() <= 2e-2


def test_attention_implementations_agree(tmp_path):
    path, _ = make_hf_model(tmp_path, with_tokenizer=False)
    ids, mask = random_batch(np.random.default_rng(5), batch=4, length=20)
    xla = _run(load_model(path, ModelOptions(attention="xla")), ids, mask)
    fused = _run(load_model(path, ModelOptions(attention="dot_product")), ids, mask)
    real = mask.astype(bool)
    assert np.abs(xla - fused)[real].max() <= 1e-5 * np.abs(xla[real]).max()


def test_padding_does_not_change_real_positions(tmp_path):
    path, _ = make_hf_model(tmp_path, with_tokenizer=False)
    model = load_model(path)
    ids, mask = random_batch(np.random.default_rng(6), batch=1, length=10)
    short = _run(model, ids, mask)
    padded_ids = np.concatenate([ids, np.full((1, 22), 7, np.int32)], axis=1)
    padded_mask = np.concatenate([mask, np.zeros((1, 22), np.int32)], axis=1)
    long = _run(model, padded_ids, padded_mask)
    np.testing.assert_allclose(long[:, :10], short, atol=1e-5)


def test_remat_policies_give_same_gradients():
    cfg = Qwen3Config(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    ids, mask = random_batch(np.random.default_rng(7), batch=3, length=12, vocab=300)
    grads = {}
    for policy in ("none", "full", "dots"):
        model = Qwen3Model(cfg, ModelOptions(remat=policy), rngs=nnx.Rngs(0))

        def loss(m):
            return jnp.sum(last_token_pool(m(jnp.asarray(ids), jnp.asarray(mask)), jnp.asarray(mask)) ** 2)

        g = nnx.grad(loss)(model)
        grads[policy] = np.asarray(g["layers"]["mlp"]["down_proj"]["kernel"][...])
    scale = np.abs(grads["none"]).max()
    assert scale > 0
    for policy in ("full", "dots"):  # recomputation reorders float32 sums: equal to rounding
        assert np.abs(grads[policy] - grads["none"]).max() <= 1e-4 * scale


def test_last_token_pool_picks_last_real_token():
    hidden = jnp.arange(2 * 5 * 3, dtype=jnp.float32).reshape(2, 5, 3)
    mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(np.asarray(last_token_index(mask)), [2, 4])
    np.testing.assert_array_equal(np.asarray(last_token_pool(hidden, mask)),
                                  np.asarray(hidden)[[0, 1], [2, 4]])


def test_options_reject_unknown_values():
    with pytest.raises(ValueError, match="attention"):
        ModelOptions(attention="flash")
    with pytest.raises(ValueError, match="remat"):
        ModelOptions(remat="sometimes")
    with pytest.raises(ValueError, match="dtype"):
        ModelOptions(dtype="float8")


def test_layers_are_scanned_not_unrolled():
    """The compiled program holds one copy of the block however deep the model is."""
    def hlo_size(layers: int) -> int:
        cfg = Qwen3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=layers,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=8)
        graphdef, state = nnx.split(nnx.eval_shape(lambda: Qwen3Model(cfg, rngs=nnx.Rngs(0))))
        ids = jax.ShapeDtypeStruct((2, 8), jnp.int32)
        fn = jax.jit(lambda s, i, m: nnx.merge(graphdef, s)(i, m))
        return len(fn.lower(state, ids, ids).as_text())

    assert hlo_size(24) <= 1.05 * hlo_size(2)


def test_option_names_have_one_definition():
    """The config's Literal names (model/options.py) are exactly the implementations qwen3 has."""
    from f2jax.model.options import DTYPE_NAMES, REMAT_NAMES
    from f2jax.model.qwen3 import DTYPES, REMAT_POLICIES

    assert tuple(REMAT_POLICIES) == REMAT_NAMES and tuple(DTYPES) == DTYPE_NAMES


def _compiled_lines(fn, *args) -> list[str]:
    """Instruction lines of the optimised HLO (metadata stripped, so op names do not match)."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    return [line.split(", metadata=")[0] for line in text.splitlines()]


def test_token_major_dot_equals_dot_general_and_its_weight_gradient_needs_no_transpose():
    from f2jax.model.qwen3 import token_major_dot

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((6, 40, 16)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((16, 24)), jnp.float32)
    dims = (((2,), (0,)), ((), ()))
    np.testing.assert_allclose(np.asarray(token_major_dot(x, w, dims)),
                               np.asarray(jax.lax.dot_general(x, w, dims)), rtol=1e-6, atol=1e-5)

    def loss(dot, x, w):  # a SwiGLU-like elementwise producer feeds the weight gradient
        return jnp.sum(jax.nn.silu(dot(x, w, dims)) * jnp.cos(dot(x, w, dims)))

    grads = [jax.grad(lambda x, w, d=d: loss(d, x, w), argnums=(0, 1))(x, w)
             for d in (token_major_dot, jax.lax.dot_general)]
    for ours, ref in zip(*grads, strict=True):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-5, atol=1e-4)
    lines = _compiled_lines(jax.grad(lambda x, w: loss(token_major_dot, x, w), argnums=1), x, w)
    # XLA:CPU (jax 0.10-0.11) lowers the plain [6, 40, 16] dot's weight gradient with one.
    assert not [line for line in lines if " transpose(" in line]
