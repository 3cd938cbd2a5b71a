"""Logical axes declared on the parameters, the rules that place them, and the activation pin."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from jax.sharding import PartitionSpec

from f2jax.hf.names import hf_shapes, tensor_maps
from f2jax.model import Qwen3Config, abstract_model
from f2jax.model.partitioning import pin_batch
from f2jax.sharding import make_mesh, param_shardings

CFG = Qwen3Config(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, attention_bias=True)


def test_every_parameter_declares_one_axis_per_dimension():
    _, state = abstract_model(CFG)
    flat = list(nnx.to_flat_state(state))
    assert len(flat) == 17  # embedding, final norm, 7 kernels, 4 biases, 4 block norms
    for path, var in flat:
        names = var.get_metadata()["out_sharding"]
        assert len(names) == var.ndim, path
        assert (names[0] == "layers") == (path[0] == "layers"), path


def test_rules_place_parameters_with_replication_fallback():
    mesh = make_mesh(data=1, fsdp=4, tensor=2)
    _, state = abstract_model(CFG)
    specs = jax.tree.map(lambda s: s.spec, param_shardings(state, mesh))
    assert specs["embed_tokens"]["embedding"] == PartitionSpec("tensor", "fsdp")
    assert specs["layers"]["mlp"]["down_proj"]["kernel"] == PartitionSpec(None, "tensor", "fsdp")
    assert specs["layers"]["self_attn"]["q_proj"]["bias"] == PartitionSpec(None, "tensor")
    assert specs["norm"]["weight"] == PartitionSpec(None)
    odd = Qwen3Config(**{**CFG.__dict__, "vocab_size": 97})  # 97 % 2: vocab stays replicated
    _, odd_state = abstract_model(odd)
    assert param_shardings(odd_state, mesh)["embed_tokens"]["embedding"].spec == PartitionSpec(None, "fsdp")


def test_plain_dict_is_refused():
    """Axes live on the Variables: a pure dict has none, so it cannot be placed by guesswork."""
    _, state = abstract_model(CFG)
    with pytest.raises(TypeError, match="abstract_model"):
        param_shardings(nnx.to_pure_dict(state), make_mesh(data=1, fsdp=-1, tensor=1))


def test_undeclared_parameter_is_an_error():
    mesh = make_mesh(data=1, fsdp=-1, tensor=1)
    with pytest.raises(KeyError, match="no logical axes"):
        param_shardings(nnx.State({"w": nnx.Param(jnp.zeros(4))}), mesh)


def test_hf_shapes_come_from_the_model():
    shapes = hf_shapes(CFG, "model.")
    assert len(shapes) == sum(len(t.names(CFG.num_hidden_layers)) for t in tensor_maps(CFG))
    assert shapes["model.embed_tokens.weight"] == (96, 32)
    assert shapes["model.layers.2.self_attn.k_proj.weight"] == (16, 32)  # [out, in] in transformers
    assert shapes["model.layers.0.self_attn.o_proj.bias"] == (32,)
    assert shapes["model.layers.1.mlp.down_proj.weight"] == (32, 48)


def test_pin_batch_follows_jax_mesh_context():
    mesh = make_mesh(data=2, fsdp=4, tensor=1)
    x = jnp.ones((8, 3))
    assert pin_batch(x) is x  # no mesh set: nothing to pin to
    fn = jax.jit(pin_batch)
    with jax.set_mesh(mesh):
        assert fn(x).sharding.spec[0] == ("data", "fsdp")
        assert pin_batch(jnp.ones((6, 3))).shape == (6, 3)  # 6 % 8: left alone
