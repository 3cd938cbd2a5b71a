"""Target shapes, kept-unit selection and weight surgery (exactness checked through the forward)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tiny_models import random_batch

from f2jax.errors import UserInputError
from f2jax.model.config import Qwen3Config
from f2jax.model.presets import SHAPES
from f2jax.prune.forward import Forward
from f2jax.prune.importance import Scores
from f2jax.prune.surgery import (
    Plan,
    Target,
    apply_plan,
    intermediate_targets,
    make_plan,
    prefix_aligned,
    resolve_target,
    target_config,
)
from f2jax.prune.weights import read_checkpoint

QWEN3_06B = Qwen3Config(**SHAPES["0.6b"])


@pytest.mark.parametrize("preset,params", [("80m", 80_084_288), ("160m", 159_185_024), ("330m", 334_349_184)])
def test_presets_on_a_06b_shape_give_the_f2llm_v2_parameter_counts(preset, params):
    target = resolve_target(QWEN3_06B, preset)
    cfg = target_config(QWEN3_06B, target)
    assert cfg.num_params() == params
    assert (cfg.vocab_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (151_936, 16, 8, 128)


@pytest.mark.parametrize("dims,match", [
    ({"hidden_size": 2048}, "--hidden 2048 exceeds the model's hidden_size 1024"),
    ({"num_hidden_layers": 29}, "--layers 29 exceeds"),
    ({"intermediate_size": 0}, "--intermediate must be >= 1"),
    ({"num_attention_heads": 12}, "--heads 12 must be a multiple of --kv-heads 8"),
    ({"num_key_value_heads": 4}, "16 query heads per KV group|4 query heads per KV group exceed the model's 2"),
])
def test_impossible_shapes_name_the_flag(dims, match):
    with pytest.raises(UserInputError, match=match):
        resolve_target(QWEN3_06B, None, **dims)


def test_intermediate_targets_end_at_the_target():
    target = resolve_target(QWEN3_06B, "80m")
    steps = intermediate_targets(QWEN3_06B, target, 3)
    assert steps[-1] == target and len(steps) == 3
    hidden = [QWEN3_06B.hidden_size] + [s.hidden_size for s in steps]
    assert hidden == sorted(hidden, reverse=True)
    assert all(s.num_attention_heads % s.num_key_value_heads == 0 for s in steps)


def test_prefix_aligned_keeps_leading_channels_in_place():
    order = prefix_aligned(np.array([0, 2, 5, 7]))
    assert order.tolist() == [0, 5, 2, 7]
    assert prefix_aligned(np.arange(6)).tolist() == list(range(6))


def _random_scores(cfg: Qwen3Config, seed: int = 0) -> Scores:
    rng = np.random.default_rng(seed)
    n = cfg.num_hidden_layers
    return Scores(rng.random(n), rng.random((2 * n + 1, cfg.hidden_size)), rng.random((n, cfg.intermediate_size)),
                  rng.random((n, cfg.num_attention_heads)))


def test_keeping_every_unit_is_the_identity(tiny_random):
    cfg, tensors = read_checkpoint(tiny_random)
    new_cfg, pruned = apply_plan(cfg, tensors, make_plan(cfg, _random_scores(cfg), Target.of(cfg)))
    assert new_cfg == cfg and pruned.keys() == tensors.keys()
    assert all(np.array_equal(pruned[k], tensors[k]) for k in tensors)


def test_permuting_every_unit_permutes_only_the_output(tiny_random):
    """All units kept in shuffled order (hidden channels, MLP channels, KV groups, heads): the
    final states are the original ones with channels permuted, so every tensor is cut consistently."""
    cfg, tensors = read_checkpoint(tiny_random)
    rng = np.random.default_rng(0)
    group, n = cfg.num_attention_heads // cfg.num_key_value_heads, cfg.num_hidden_layers
    hidden = rng.permutation(cfg.hidden_size)
    heads = [np.concatenate([g * group + rng.permutation(group) for g in rng.permutation(cfg.num_key_value_heads)])
             for _ in range(n)]
    plan = Plan(np.arange(n), hidden, [rng.permutation(cfg.intermediate_size) for _ in range(n)], heads)
    new_cfg, pruned = apply_plan(cfg, tensors, plan)
    ids, mask = random_batch(rng, 4, 16)
    ref, _ = Forward(cfg, tensors).run(ids, mask)
    out, _ = Forward(new_cfg, pruned).run(ids, mask)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref)[..., hidden], rtol=1e-5, atol=1e-5)


def test_depth_pruning_equals_skipping_the_layer(tiny_random):
    cfg, tensors = read_checkpoint(tiny_random)
    scores = dataclasses.replace(_random_scores(cfg), block_influence=np.array([0.5, 0.1, 0.3]))
    new_cfg, pruned = apply_plan(cfg, tensors, make_plan(cfg, scores, dataclasses.replace(
        Target.of(cfg), num_hidden_layers=2)))
    assert new_cfg.num_hidden_layers == 2 and "layers.2.mlp.up_proj.weight" not in pruned
    ids, mask = random_batch(np.random.default_rng(2), 4, 16)
    ref, _ = Forward(cfg, tensors).run(ids, mask, skip=[1])
    out, _ = Forward(new_cfg, pruned).run(ids, mask)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))


def test_width_and_head_pruning_shapes_and_parameter_count(tiny_random):
    cfg, tensors = read_checkpoint(tiny_random)
    target = Target(hidden_size=40, num_hidden_layers=2, intermediate_size=96, num_attention_heads=2,
                    num_key_value_heads=1)
    new_cfg, pruned = apply_plan(cfg, tensors, make_plan(cfg, _random_scores(cfg), target))
    assert new_cfg == target_config(cfg, target)
    assert sum(v.size for v in pruned.values()) == new_cfg.num_params()
    assert pruned["layers.1.self_attn.o_proj.weight"].shape == (40, 2 * cfg.head_dim)
    assert pruned["layers.1.self_attn.k_proj.bias"].shape == (cfg.head_dim,)
