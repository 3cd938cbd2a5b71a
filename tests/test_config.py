"""Config loading: every shipped config resolves; includes, overrides and type errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from f2jax.config import ConfigError, load_config
from f2jax.train.setup import check_static

CONFIGS = sorted(Path("configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=str)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.data.global_batch_size >= 1
    if path.name != "base.yaml":
        assert (cfg.model.path is None) != (cfg.model.init is None)


def test_recipe_inherits_reference_hyperparameters():
    s1 = load_config("configs/recipes/stage1_4b.yaml")
    s2 = load_config("configs/recipes/stage2_4b.yaml")
    assert (s1.train.lr, s1.train.warmup_steps, s1.train.b2, s1.data.global_batch_size) == (8e-6, 500, 0.98, 512)
    assert s1.data.instructions is False and s2.data.instructions is True
    assert s2.model.path == "runs/stage1_4b/export" and s2.train.lr == 8e-6
    assert load_config("configs/recipes/stage1_0.6b.yaml").train.lr == 1e-5


def test_overrides_and_errors(tmp_path):
    cfg = load_config("configs/demo.yaml", ["train.steps=7", "mesh.data=2", "train.lr=5e-3",
                                            "data.buckets=[64, 128]"])
    assert (cfg.train.steps, cfg.mesh.data, cfg.train.lr, cfg.data.buckets) == (7, 2, 5e-3, [64, 128])
    with pytest.raises(ConfigError, match="train.steps: expected an integer"):
        load_config("configs/demo.yaml", ["train.steps=1.5"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config("configs/demo.yaml", ["train.steps"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="model: seq_chunk must be >= 0"):
        check_static(load_config("configs/demo.yaml", ["model.seq_chunk=-2"]))
    assert load_config("configs/demo.yaml", ["model.seq_chunk=4"]).model.options().seq_chunk == 4
    with pytest.raises(ConfigError, match="data.raw: .* does not exist"):
        check_static(load_config("configs/demo.yaml", [f"data.raw={tmp_path}/none"]))


@pytest.mark.parametrize("override,suggestion", [
    ("train.lrr=3", "train.lrr (did you mean train.lr?)"),
    ("trian.lr=3", "trian (did you mean train?)"),
    ("model.attn=xla", "model.attn (did you mean model.attention?)"),
])
def test_unknown_key_suggests_the_closest(override, suggestion):
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): " + re.escape(suggestion)):
        load_config(None, [override])
    with pytest.raises(ConfigError) as info:  # nothing close: no guess
        load_config(None, ["train.zzzzzz=1"])
    assert "did you mean" not in str(info.value)
