"""Streaming safetensors load: sharded checkpoints, mesh placement, and every refusal."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tiny_models import hf_hidden_states, make_hf_model, random_batch

from f2jax.hf import CheckpointError, load_model
from f2jax.model import UnsupportedModelError
from f2jax.sharding import make_mesh


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_hf_model(tmp_path_factory.mktemp("tiny"), with_tokenizer=False)


def _copy_with(tiny_path, dst, edit):
    """A copy of the tiny checkpoint whose tensors dict was edited by `edit`."""
    dst.mkdir()
    tensors = load_file(tiny_path / "model.safetensors")
    edit(tensors)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    (dst / "config.json").write_text((tiny_path / "config.json").read_text())
    return dst


def test_sharded_checkpoint_with_index(tiny, tmp_path):
    path, hf = tiny
    tensors = load_file(path / "model.safetensors")
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, part in halves.items():
        save_file({n: tensors[n] for n in part}, tmp_path / file, metadata={"format": "pt"})
    weight_map = {n: f for f, part in halves.items() for n in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    ids, mask = random_batch(np.random.default_rng(0), 3, 16)
    out = np.asarray(load_model(tmp_path)(jnp.asarray(ids), jnp.asarray(mask)))
    ref = hf_hidden_states(hf, ids, mask)
    real = mask.astype(bool)
    assert np.abs(out - ref)[real].max() <= 1e-4 * np.abs(ref[real]).max()


def test_sharded_over_eight_devices_matches_single_device(tiny):
    assert jax.device_count() == 8
    path, _ = tiny
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    sharded = load_model(path, mesh=mesh)
    kernel = sharded.layers.mlp.gate_proj.kernel[...]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    assert len({s.device for s in kernel.addressable_shards}) == 8
    single = load_model(path)
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(single.layers.mlp.gate_proj.kernel[...]))
    ids, mask = random_batch(np.random.default_rng(1), 4, 16)
    out_sharded = jax.jit(lambda i, m: sharded(i, m))(jnp.asarray(ids), jnp.asarray(mask))
    out_single = single(jnp.asarray(ids), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(out_sharded), np.asarray(out_single), atol=2e-5, rtol=1e-5)


def test_missing_tensor(tiny, tmp_path):
    path = _copy_with(tiny[0], tmp_path / "c", lambda t: t.pop("layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing.*layers\.1\.mlp\.up_proj\.weight"):
        load_model(path)


def test_unexpected_tensor(tiny, tmp_path):
    def add(t):
        t["layers.0.self_attn.rotary.inv_freq"] = np.zeros(4, np.float32)

    path = _copy_with(tiny[0], tmp_path / "c", add)
    with pytest.raises(CheckpointError, match=r"unexpected.*model\.safetensors.*rotary\.inv_freq"):
        load_model(path)


def test_shape_mismatch_with_config(tiny, tmp_path):
    def shrink(t):
        t["layers.0.self_attn.k_proj.weight"] = t["layers.0.self_attn.k_proj.weight"][:16]

    path = _copy_with(tiny[0], tmp_path / "c", shrink)
    with pytest.raises(CheckpointError, match=r"k_proj\.weight.*shape \(16, 64\).*\(32, 64\)"):
        load_model(path)


@pytest.mark.parametrize("edit,match", [
    ({"model_type": "llama"}, "model_type 'llama'"),
    ({"architectures": ["Qwen3ForSequenceClassification"]}, "Qwen3ForSequenceClassification"),
    ({"use_sliding_window": True}, "sliding"),
])
def test_unsupported_architecture(tiny, tmp_path, edit, match):
    path = _copy_with(tiny[0], tmp_path / "c", lambda t: None)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(UnsupportedModelError, match=match):
        load_model(path)


def test_pickle_only_checkpoint_is_refused(tiny, tmp_path):
    (tmp_path / "config.json").write_text((tiny[0] / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(CheckpointError, match="pickle.*safetensors only"):
        load_model(tmp_path)


def test_index_naming_absent_shard(tiny, tmp_path):
    (tmp_path / "config.json").write_text((tiny[0] / "config.json").read_text())
    index = {"weight_map": {"norm.weight": "model-00001-of-00001.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="do not exist"):
        load_model(tmp_path)
