"""Checkpoints: keep policy, restore onto another mesh, corrupt steps skipped, NaN steps never
saved, background-save errors surface, config changes named, export of any saved step."""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec
from orbax.checkpoint._src.handlers import json_checkpoint_handler
from sentence_transformers import SentenceTransformer
from tiny_models import hf_hidden_states, random_batch
from transformers import AutoModel

import f2jax
from f2jax.cli import main
from f2jax.config import CheckpointSection, ConfigError, load_config
from f2jax.sharding import make_mesh
from f2jax.train import trainer as trainer_module
from f2jax.train.checkpoint import Checkpointer, CheckpointError, abstract_like
from f2jax.train.metrics import NonFiniteLossError
from f2jax.train.resume import config_differences, truncate_metrics
from f2jax.train.state import TrainState

TEXTS = ["What is the capital of France?", "def add(a, b):\n    return a + b",
         "Die Hauptstadt von Deutschland ist Berlin.", "x"]


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    """Shared with test_resume: tiny-model steps compile once per test session."""
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.getbasetemp() / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _state(mesh, scale: float) -> TrainState:
    """A small train state sharded over `mesh`."""
    rows = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    rep = NamedSharding(mesh, PartitionSpec())
    w = jax.device_put(np.arange(64, dtype=np.float32).reshape(16, 4) * scale, rows)
    return TrainState(params={"w": w, "b": jax.device_put(np.full(3, scale, np.float32), rep)},
                      opt_state={"mu": jax.device_put(np.ones((16, 4), np.float32) * -scale, rows)},
                      step=jax.device_put(jnp.int32(int(scale)), rep))


def _max_diff(a, b) -> float:
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_keep_last_k_plus_every_m_and_restore_onto_another_mesh(tmp_path):
    ckpt = Checkpointer(tmp_path, CheckpointSection(keep=2, keep_every=3, async_save=True))
    mesh8 = make_mesh(-1, 1, 1)
    for step in range(1, 8):
        ckpt.save(step, _state(mesh8, step), {"next_index": step}, {"config": {}})
    ckpt.wait()
    assert ckpt.steps() == [3, 6, 7]  # newest 2, plus every 3rd
    mesh4 = make_mesh(2, 2, 1, devices=jax.devices()[:4])
    target = _state(mesh4, 0)
    shardings = jax.tree.map(lambda x: x.sharding, target)
    restored = ckpt.restore(abstract_like(target, shardings))
    assert restored.step == 7 and restored.data == {"next_index": 7}
    assert _max_diff(restored.state, _state(mesh8, 7)) == 0.0
    assert restored.state.params["w"].sharding == shardings.params["w"]
    params_only = ckpt.restore(TrainState(params=abstract_like(target.params, shardings.params)), step=3)
    assert params_only.state.opt_state is None and params_only.state.step is None
    assert _max_diff(params_only.state.params, _state(mesh8, 3).params) == 0.0
    ckpt.close()


@pytest.mark.parametrize("damage", ["truncate", "delete_item"])
def test_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path, caplog, damage):
    mesh = make_mesh(-1, 1, 1)
    ckpt = Checkpointer(tmp_path, CheckpointSection(keep=3))
    for step in (1, 2):
        ckpt.save(step, _state(mesh, step), {"next_index": step}, {})
    ckpt.wait()
    newest = tmp_path / "2"
    if damage == "truncate":
        files = [p for p in newest.rglob("*") if p.is_file() and p.stat().st_size > 0]
        for p in files:
            p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    else:
        import shutil

        shutil.rmtree(newest / "params")
    target = _state(mesh, 0)
    with caplog.at_level(logging.WARNING):
        restored = ckpt.restore(abstract_like(target, jax.tree.map(lambda x: x.sharding, target)))
    assert restored.step == 1 and _max_diff(restored.state, _state(mesh, 1)) == 0.0
    assert any(f"{newest} is incomplete or corrupt" in r.getMessage() for r in caplog.records)
    assert not newest.exists() and any((tmp_path / "corrupt").iterdir())
    assert ckpt.steps() == [1]
    ckpt.save(2, _state(mesh, 2), {"next_index": 2}, {})  # the step can be written again
    ckpt.close()


def test_background_save_error_surfaces_in_the_training_process(tmp_path, monkeypatch):
    async def disk_full(self, x, directory):
        raise OSError("No space left on device (simulated)")

    mesh = make_mesh(-1, 1, 1)
    ckpt = Checkpointer(tmp_path, CheckpointSection(async_save=True))
    monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", disk_full)
    ckpt.save(1, _state(mesh, 1), {"next_index": 1}, {})  # returns: the write is in a thread
    with pytest.raises(CheckpointError, match="No space left on device"):
        ckpt.wait()
    monkeypatch.undo()
    assert ckpt.steps() == []


def _trainer(tmp_path: Path, overrides: list[str]) -> trainer_module.Trainer:
    cfg = load_config("configs/demo.yaml", [*overrides, "train.warmup_steps=1"])
    return trainer_module.Trainer(cfg, tmp_path / "run")


def test_a_nan_step_is_never_checkpointed(tmp_path, tiny_overrides, monkeypatch):
    checked = []

    def fail_at_3(step, source, metrics):
        checked.append(step)
        if step == 3:
            raise NonFiniteLossError(f"non-finite loss at step {step}")

    monkeypatch.setattr(trainer_module, "check_finite", fail_at_3)
    trainer = _trainer(tmp_path, [*tiny_overrides, "train.steps=5", "checkpoint.every=1",
                                  "checkpoint.keep=10"])
    with pytest.raises(NonFiniteLossError):
        trainer.train()
    trainer.checkpointer.wait()
    assert checked == [1, 2, 3] and trainer.checkpointer.steps() == [1, 2]
    trainer.close()


def test_export_of_a_checkpoint_loads_in_transformers_and_sentence_transformers(
        tmp_path, tiny_overrides, caplog):
    trainer = _trainer(tmp_path, [*tiny_overrides, "train.steps=3", "checkpoint.every=2"])
    trainer.train()
    trainer.close()
    assert trainer.checkpointer.steps() == [2, 3]
    # resuming with a changed learning rate names the key loudly (checked before the CLI runs:
    # the CLI's logging setup replaces the root handlers that caplog listens on)
    with pytest.raises(ConfigError, match=r"holds checkpoints of another config; train.lr \(.*allow_config_change"):
        _trainer(tmp_path, [*tiny_overrides, "train.steps=3", "train.lr=0.5"])
    changed = _trainer(tmp_path, [*tiny_overrides, "train.steps=3", "train.lr=0.5",
                                  "checkpoint.allow_config_change=true"])
    with caplog.at_level(logging.WARNING):
        changed.train()
    changed.close()
    assert any("DIFFERENT CONFIG" in r.getMessage() and "train.lr" in r.getMessage() for r in caplog.records)
    out = tmp_path / "export"
    assert main(["export", str(tmp_path / "run"), str(out), "--step", "3"]) == 0
    encoder = trainer.encoder()  # the parameters after step 3
    hf = AutoModel.from_pretrained(out).eval()
    ids, mask = random_batch(np.random.default_rng(0), 4, 20)
    ours, ref = encoder.hidden_states(ids, mask), hf_hidden_states(hf, ids, mask)
    real = mask.astype(bool)
    assert np.abs(ours - ref)[real].max() <= 1e-4 * np.abs(ref[real]).max()
    st = SentenceTransformer(str(out), device="cpu")
    theirs, mine = st.encode(TEXTS), encoder.encode(TEXTS)
    np.testing.assert_allclose(f2jax.load(tmp_path / "run", step=3).encode(TEXTS), mine, atol=1e-5)
    cosine = (mine * theirs).sum(-1) / np.linalg.norm(theirs, axis=-1)
    assert cosine.min() >= 0.9999
    # step 2 is exported too, and differs from step 3
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "export2"), "--step", "2"]) == 0
    st2 = SentenceTransformer(str(tmp_path / "export2"), device="cpu")
    assert np.abs(st2.encode(TEXTS) - theirs).max() > 1e-4



def test_config_differences_ignore_run_length_and_bookkeeping():
    base = load_config("configs/demo.yaml").to_dict()
    other = load_config("configs/demo.yaml", ["train.steps=999", "train.log_every=3", "mesh.data=4",
                                              "checkpoint.every=7", "data.num_threads=1"]).to_dict()
    assert config_differences(base, other) == {}
    changed = load_config("configs/demo.yaml", ["train.seed=1", "model.init.hidden_size=64"]).to_dict()
    assert set(config_differences(base, changed)) == {"train.seed", "model.init"}


def test_truncate_metrics_keeps_one_record_per_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [f'{{"step": {s}, "loss": {s / 10}}}' for s in range(1, 8)]
    path.write_text("\n".join(lines) + '\n{"step": 8, "lo')  # a record cut by SIGKILL
    assert truncate_metrics(path, 5) == 3
    assert path.read_text().splitlines() == lines[:5]
