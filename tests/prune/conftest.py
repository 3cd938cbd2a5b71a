"""Shared fixtures of the pruning tests: a tiny random Qwen3, tokenised demo data, and a small
model trained on the demo data (session scope: trained once for the depth and KD tests)."""

from __future__ import annotations

import pytest

TRAINED_SHAPE = ("{hidden_size: 64, intermediate_size: 128, num_hidden_layers: 6, num_attention_heads: 4,"
                 " num_key_value_heads: 2, head_dim: 16, max_position_embeddings: 256}")
DATA = ["data.max_length=64", "data.buckets=[64]", "data.global_batch_size=8", "data.raw=null",
        "checkpoint.every=0", "train.log_every=10",
        "mesh.data=1", "mesh.fsdp=8"]  # sharded state: replicas would each update the 151,669-row embedding


@pytest.fixture(scope="session")
def tiny_random(tmp_path_factory):
    """A random 3-layer Qwen3 (hidden 64, 4 q / 2 KV heads, attention biases) with tokenizer."""
    from tiny_models import make_hf_model

    return make_hf_model(tmp_path_factory.mktemp("prune_tiny"), num_hidden_layers=3, attention_bias=True)[0]


@pytest.fixture(scope="session")
def trained(tmp_path_factory, demo_tokenized):
    """A 6-layer model trained 80 steps on the demo data with the Trainer, exported."""
    from f2jax.config import load_config
    from f2jax.train.trainer import Trainer

    run = tmp_path_factory.mktemp("prune_trained")
    overrides = [f"model.init={TRAINED_SHAPE}", *DATA, f"data.path={demo_tokenized}", "train.steps=80",
                 "train.lr=1e-3", "train.warmup_steps=5", "train.eval_every=0"]
    trainer = Trainer(load_config("configs/demo.yaml", overrides), run / "run")
    trainer.train()
    out = trainer.export(run / "export")
    trainer.close()
    return out
