"""Importance scores: file round trips, and block influence on a trained model."""

from __future__ import annotations

import numpy as np
import pytest

from f2jax.errors import UserInputError
from f2jax.model.config import Qwen3Config
from f2jax.prune.calibration import calibration_batches
from f2jax.prune.forward import Forward
from f2jax.prune.importance import Scores, heldout_loss, score
from f2jax.prune.prune import data_mesh
from f2jax.prune.weights import read_checkpoint

CFG = Qwen3Config(vocab_size=100, hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=4)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_scores_round_trip_and_refuse_another_models_file(tmp_path, suffix):
    rng = np.random.default_rng(0)
    scores = Scores(rng.random(2), rng.random((5, 8)), rng.random((2, 16)), rng.random((2, 4)),
                    drop_loss=rng.random(2), meta={"batches": 3})
    back = Scores.load(scores.save(tmp_path / f"s{suffix}"), CFG)
    assert back.meta == {"batches": 3}
    for name in ("block_influence", "hidden", "mlp", "heads", "drop_loss"):
        np.testing.assert_allclose(getattr(back, name), getattr(scores, name))
    other = Qwen3Config(**{**CFG.__dict__, "hidden_size": 16})
    with pytest.raises(UserInputError, match=r"--scores .*: hidden has shape \(5, 8\), the model implies \(5, 16\)"):
        Scores.load(tmp_path / f"s{suffix}", other)


def test_dropping_low_influence_layers_costs_less_than_random_layers(trained, demo_tokenized):
    """On a model trained on the demo data, the two layers of least block influence raise the
    held-out contrastive loss less than two random layers do, on average over seeds."""
    cfg, tensors = read_checkpoint(trained)
    forward = Forward(cfg, tensors, data_mesh())
    calib = calibration_batches(demo_tokenized, trained, batches=4, batch_size=8, max_length=64)
    held = calibration_batches(demo_tokenized, trained, batches=6, batch_size=8, max_length=64,
                               split="validation", holdout=0.05)
    assert len({b.source for b in held}) == 3
    scores = score(forward, calib)
    assert np.all((scores.block_influence > 0) & (scores.block_influence < 1))
    assert scores.hidden.shape == (13, 64) and np.all(scores.mlp > 0)
    base = heldout_loss(forward, held)
    by_influence = heldout_loss(forward, held, np.argsort(scores.block_influence)[:2]) - base
    random_rises = [heldout_loss(forward, held, np.random.default_rng(seed).choice(6, 2, replace=False)) - base
                    for seed in range(5)]
    assert by_influence < np.mean(random_rises)
