"""`data.packing` end to end: the packed run's first losses equal the padded run's (same batch
rows), and the settings packing cannot take fail as config errors."""

from __future__ import annotations

import numpy as np
import pytest

from f2jax.config import ConfigError, load_config
from f2jax.data.batch import PackedBatch
from f2jax.model.attention import AttentionUnavailableError
from f2jax.train.metrics import read_metrics
from f2jax.train.trainer import Trainer


def _losses(tmp_path, overrides: list[str], name: str) -> list[dict]:
    trainer = Trainer(load_config("configs/demo.yaml", overrides), tmp_path / name)
    trainer.train()
    trainer.close()
    return [r for r in read_metrics(tmp_path / name) if r.get("split") is None]


@pytest.mark.parametrize("accum", [1, 2], ids=["whole", "gradcache"])
def test_packed_training_matches_padded(tmp_path, tiny_overrides, accum):
    """Packed (with GradCache: two micro-batches, each packed apart) vs the whole padded batch."""
    base = [*tiny_overrides, "train.steps=3", f"data.global_batch_size={8 * accum}"]
    padded = _losses(tmp_path, base, "padded")
    packed = _losses(tmp_path, [*base, "data.packing=true", f"train.grad_accum={accum}"], "packed")
    assert [r["source"] for r in packed] == [r["source"] for r in padded]
    for key in ("loss", "loss_inbatch", "loss_hard"):
        np.testing.assert_allclose(packed[0][key], padded[0][key], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r["loss"] for r in packed], [r["loss"] for r in padded], rtol=1e-4)
    # fewer computed tokens for the same real tokens
    assert packed[0]["padded_tokens_per_s"] / packed[0]["tokens_per_s"] < \
        padded[0]["padded_tokens_per_s"] / padded[0]["tokens_per_s"]


def test_packed_run_dataset_shards_rows(tmp_path, tiny_overrides):
    trainer = Trainer(load_config("configs/demo.yaml", [*tiny_overrides, "data.packing=true"]), tmp_path / "r")
    batch = trainer.run.dataset[0].arrays
    assert isinstance(batch, PackedBatch) and batch.ids.shape[0] % 8 == 0  # 8 data shards, 1 process
    assert batch.ids.shape[1] == 64
    trainer.close()


@pytest.mark.parametrize("override,error,match", [
    # which kernel takes packed rows is decided per backend (f2jax.model.attention.choose_kernel)
    ("model.attention=cudnn", AttentionUnavailableError, r"model\.attention: 'cudnn' cannot run here"),
    ("data.pack_length=32", ConfigError, r"data\.pack_length \(32\) must be >= data\.max_length \(64\)"),
])
def test_packing_config_errors(tmp_path, tiny_overrides, override, error, match):
    with pytest.raises(error, match=match):
        Trainer(load_config("configs/demo.yaml", [*tiny_overrides, "data.packing=true", override]), tmp_path / "r")


def test_offsets_reach_the_device_only_for_cudnn():
    """Packed rows' offsets/seqlens are read by cuDNN alone; elsewhere they would only add shapes."""
    from f2jax.train.trainer import _packed_offsets_needed

    cfg = load_config("configs/demo.yaml", ["data.packing=true"])
    assert not _packed_offsets_needed(cfg, 32)  # CPU: the xla kernel
    cfg = load_config("configs/demo.yaml", ["data.packing=false"])
    assert not _packed_offsets_needed(cfg, 32)
