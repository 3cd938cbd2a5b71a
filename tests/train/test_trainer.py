"""The training loop end to end on the demo data, and every configuration error."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from f2jax.config import ConfigError, load_config
from f2jax.train.metrics import NonFiniteLossError, read_metrics
from f2jax.train.trainer import Trainer

# Parameters and optimiser state sharded over the 8 simulated devices: the same numbers as
# data parallelism (to float order) at half the time on 2 cores, where replicas would each
# update their own copy of the 151,669-row embedding.
FSDP8 = ["mesh.data=1", "mesh.fsdp=8"]


def _trainer(tmp_path, overrides):
    return Trainer(load_config("configs/demo.yaml", overrides), tmp_path / "run")


def test_demo_learns_retrieval_and_logs_metrics(tmp_path, demo_tokenized):
    """The demo model (configs/demo.yaml) on the demo data: the code-search loss falls and
    held-out top-1 accuracy ends far above chance (1/8 with 7 hard negatives)."""
    overrides = [f"data.path={demo_tokenized}", "data.raw=null", "data.max_length=64", "data.buckets=[64]",
                 "train.steps=80", "train.lr=1e-3", "train.warmup_steps=10", "train.log_every=1",
                 "train.eval_every=80", "train.eval_batches=4", "checkpoint.every=0",
                 *FSDP8]
    trainer = _trainer(tmp_path, overrides)
    trainer.train()
    trainer.close()
    records = read_metrics(tmp_path / "run")
    train = [r for r in records if r.get("split") is None]
    assert [r["step"] for r in train] == list(range(1, 81))
    code = [r["loss"] for r in train if r["source"] == "code_search_python"]
    assert np.mean(code[-8:]) < np.mean(code[:8]) - 0.3
    val = {r["source"]: r for r in records if r.get("split") == "validation"}
    assert set(val) == {"code_search_python", "cldr_bitext", "cldr_language_id"}
    assert val["code_search_python"]["acc_hard"] > 0.3
    for source in ("code_search_python", "cldr_bitext"):
        assert 0.0 <= val[source]["ndcg_at_10"] <= 1.0 and val[source]["mrr"] > 0
    assert "ndcg_at_10" not in val["cldr_language_id"]  # classification: no in-batch retrieval
    assert all(r["tokens_per_s"] > 0 for r in train) and train[0]["lr"] == 0.0 < train[-1]["lr"]
    assert (tmp_path / "run" / "config.yaml").exists()
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_nan_loss_stops_with_step_and_source(tmp_path, tiny_overrides):
    trainer = _trainer(tmp_path, [*tiny_overrides, "train.steps=3"])
    params = trainer.state.params
    params["norm"]["weight"] = params["norm"]["weight"] * np.nan
    with pytest.raises(NonFiniteLossError, match=r"step 1 \(source '[a-z_]+'\)"):
        trainer.train()


@pytest.mark.parametrize("override,match", [
    ("train.stepz=3", r"unknown config key\(s\): train\.stepz"),
    ("mesh.data=3", r"mesh: .*3×1×1 = 3, but 8 devices"),
    ("mesh.tensor=-1", "at most one mesh axis may be -1"),
    ("data.global_batch_size=12", r"data\.global_batch_size 12 must be divisible .* = 8"),
    ("train.mrl_dims=[8, 64]", r"train\.mrl_dims: \[64\] outside \[1, hidden size 32\]"),
    ("model.path=/does/not/exist", "exactly one of model.path"),
    ("teacher.path=/does/not/exist", r"teacher\.path: /does/not/exist does not exist"),
    ("train.schedule=linear", r"train\.schedule: expected one of \[.cosine., .constant.\]"),
    ("model.attention=flash", r"model\.attention: expected one of \[.*.xla.*, got .flash."),
    ("train.lr=abc", "train.lr: expected a number"),
])
def test_config_errors_before_compiling(tmp_path, tiny_overrides, override, match):
    assert jax.device_count() == 8
    with pytest.raises(ConfigError, match=match):
        _trainer(tmp_path, [*tiny_overrides, override])


def test_missing_data_path(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.path: .*nowhere does not exist"):
        Trainer(load_config("configs/demo.yaml", ["data.raw=null", f"data.path={tmp_path}/nowhere"]),
                tmp_path / "run")


def test_cohosted_teacher_distils_in_the_loop(tmp_path, tiny_overrides):
    from f2jax.testing import make_tiny_qwen3

    teacher = make_tiny_qwen3(tmp_path / "teacher", hidden=64, layers=1, heads=4, kv_heads=2)
    trainer = _trainer(tmp_path, [*tiny_overrides, "train.steps=2", f"teacher.path={teacher}",
                                  "teacher.dtype=float32", "teacher.weight=0.5"])
    trainer.train()
    trainer.close()
    train = [r for r in read_metrics(tmp_path / "run") if r.get("split") is None]
    assert len(train) == 2 and all(r["loss_kd"] > 0 for r in train)
    for r in train:
        expected = r["loss_inbatch"] + r["loss_hard"] + 0.5 * r["loss_kd"]
        assert abs(r["loss"] - expected) <= 1e-5 * abs(expected)


def test_cohosted_teacher_runs_with_its_own_runtime_options(tmp_path, tiny_overrides, monkeypatch):
    """teacher.attention / remat / dtype reach the teacher's forward pass, independent of the
    student's (xla, no remat, float32)."""
    import jax.numpy as jnp

    from f2jax.model import qwen3
    from f2jax.testing import make_tiny_qwen3

    seen_attention, seen_remat = set(), []
    real_attend, real_checkpoint = qwen3.attend, qwen3.jax.checkpoint

    def spy_attend(q, k, v, lengths, impl, *args, **kwargs):
        seen_attention.add((impl, jnp.dtype(q.dtype).name))
        return real_attend(q, k, v, lengths, impl, *args, **kwargs)

    def spy_checkpoint(fn, **kwargs):
        seen_remat.append(kwargs.get("policy"))
        return real_checkpoint(fn, **kwargs)

    monkeypatch.setattr(qwen3, "attend", spy_attend)
    monkeypatch.setattr(qwen3.jax, "checkpoint", spy_checkpoint)
    teacher = make_tiny_qwen3(tmp_path / "teacher", hidden=64, layers=1, heads=4, kv_heads=2)
    trainer = _trainer(tmp_path, [*tiny_overrides, "train.steps=1", f"teacher.path={teacher}",
                                  "teacher.dtype=bfloat16", "teacher.attention=dot_product", "teacher.remat=full"])
    trainer.train()
    trainer.close()
    assert seen_attention == {("xla", "float32"), ("dot_product", "bfloat16")}
    assert seen_remat and all(p is qwen3.REMAT_POLICIES["full"] for p in seen_remat)
