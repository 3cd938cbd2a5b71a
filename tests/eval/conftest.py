"""One tiny random Qwen3 model, loaded by f2jax and exported for sentence-transformers."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import f2jax

EXAMPLES = Path(f2jax.__file__).parent / "eval" / "examples"


@pytest.fixture(scope="session")
def tiny(exported_tiny):
    """(encoder, export_dir) for a tiny random model with the real Qwen3 tokenizer."""
    return exported_tiny


@pytest.fixture(autouse=True)
def _quiet_mteb():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
