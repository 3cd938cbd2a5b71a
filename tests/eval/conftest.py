"""One tiny random Qwen3 model, loaded by f2jax and exported for sentence-transformers."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from tiny_models import make_hf_model

import f2jax

EXAMPLES = Path(f2jax.__file__).parent / "eval" / "examples"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(encoder, export_dir) for a tiny random model with the real Qwen3 tokenizer."""
    src, _ = make_hf_model(tmp_path_factory.mktemp("eval_src"))
    encoder = f2jax.load(src, max_length=128)
    out = encoder.save_pretrained(tmp_path_factory.mktemp("eval_export"))
    return encoder, out


@pytest.fixture(autouse=True)
def _quiet_mteb():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
