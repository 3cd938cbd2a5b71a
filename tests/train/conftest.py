"""A tiny-model config over the tokenised demo data (`demo_tokenized`, tests/conftest.py),
shared by trainer tests."""

from __future__ import annotations

import pytest

TINY_MODEL = [
    "model.init={hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4,"
    " num_key_value_heads: 2, head_dim: 8, max_position_embeddings: 256}",
    "data.max_length=64", "data.buckets=[64]", "data.global_batch_size=8",
    "train.eval_every=0", "train.log_every=1", "train.warmup_steps=1", "checkpoint.every=0",
]


@pytest.fixture
def tiny_overrides(demo_tokenized):
    return [*TINY_MODEL, f"data.path={demo_tokenized}", "data.raw=null"]
