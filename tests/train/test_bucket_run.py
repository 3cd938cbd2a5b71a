"""A run whose model, data and export are gs:// URLs (an in-memory bucket behind the same epath
-> fsspec path a pod takes, tests/fake_bucket.py) trains, resumes and exports exactly as the
same run on local paths, and its export loads back from the URL.

The run directory stays local: Orbax writes arrays through TensorStore, whose gs:// driver
needs the network (run directories as URLs are covered in test_multihost)."""

from __future__ import annotations

import numpy as np
import pytest
from fake_bucket import fake_bucket
from tiny_models import make_hf_model

import f2jax
from f2jax import storage
from f2jax.cli import main
from f2jax.config import load_config
from f2jax.train.trainer import Trainer

from .conftest import TINY_MODEL

TEXTS = ["What is the capital of France?", "Paris is the capital of France.", "JAX on TPU pods"]


def _overrides(model: str, data: str, steps: int) -> list[str]:
    base = [o for o in TINY_MODEL if not o.startswith(("model.init", "checkpoint.every"))]
    return [*base, "model.init=null", f"model.path={model}", f"data.path={data}", "data.raw=null",
            f"train.steps={steps}", "checkpoint.every=1"]


def _local_run(model: str, data: str, run_dir, export: str) -> np.ndarray:
    """2 steps, a rerun on the same run directory to step 3 (a resume), export, reload, encode."""
    for steps in (2, 3):
        trainer = Trainer(load_config("configs/demo.yaml", _overrides(model, data, steps)), run_dir)
        try:
            trainer.train()
            if steps == 3:
                trainer.export(export)
        finally:
            trainer.close()
    return f2jax.load(export).encode(TEXTS)


def _url_run(fs, run_dir) -> np.ndarray:
    """The same through the commands a pod runs, every input and output a gs:// URL."""
    for steps in (2, 3):
        assert main(["train", "--config", "configs/demo.yaml", "--run-dir", str(run_dir),
                     *_overrides("gs://b/Qwen3-tiny", "gs://b/data", steps)]) == 0
    assert main(["export", str(run_dir), "gs://b/export"]) == 0
    fs.pipe("gs://b/texts.txt", "\n".join(TEXTS).encode())
    assert main(["encode", "gs://b/export", "--input", "gs://b/texts.txt", "--output", "gs://b/vectors.npy"]) == 0
    np.testing.assert_array_equal(f2jax.load("gs://b/export").encode(TEXTS[:1]), f2jax.load(
        str(run_dir / "export")).encode(TEXTS[:1]))  # the run's own export (local) is the same model
    with fs.open("gs://b/vectors.npy", "rb") as handle:
        return np.load(handle)


@pytest.mark.slow
def test_model_data_and_outputs_as_urls_equal_local_paths(tmp_path, demo_tokenized, monkeypatch):
    monkeypatch.setenv(storage.STAGE_DIR_ENV, str(tmp_path / "stage"))
    monkeypatch.setattr(storage, "_staged", {})
    model, _ = make_hf_model(tmp_path / "model")
    local = _local_run(str(model), str(demo_tokenized), tmp_path / "run_local", str(tmp_path / "export"))
    with fake_bucket() as bucket:
        fs = bucket()
        fs.put(str(model), "gs://b/Qwen3-tiny", recursive=True)
        fs.put(str(demo_tokenized), "gs://b/data", recursive=True)
        remote = _url_run(fs, tmp_path / "run_url")
        exported = sorted(f.rsplit("/", 1)[-1] for f in fs.find("gs://b/export"))
    np.testing.assert_allclose(remote, local, rtol=1e-6, atol=1e-6)
    assert {"config.json", "model.safetensors", "tokenizer.json", "modules.json"} <= set(exported)
