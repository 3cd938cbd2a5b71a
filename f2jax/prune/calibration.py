"""Calibration batches from the user's F2LLM-format data, exactly as training would read them.

Accepts a tokenised directory (`f2jax data tokenize` output), a folder of raw parquet sources
(tokenised here with the model's tokenizer), or "demo" (the bundled demo data). Batches come
from `f2jax.data.pipeline.make_dataset`, so instructions, truncation and padding match training.
"""

from __future__ import annotations

import hashlib
import tempfile

import numpy as np

from f2jax.data.batch import HostBatch
from f2jax.errors import InputNotFoundError, UserInputError
from f2jax.paths import Path, as_path, existing_dir
from f2jax.storage import local_copy

_CACHE = Path(tempfile.gettempdir()) / "f2jax_prune_calibration"


def tokenized_dir(data: str | Path, model_dir: str | Path, max_length: int) -> Path:
    """A tokenised directory for `data` (tokenising raw sources once into a cache)."""
    if str(data) == "demo":
        from f2jax.data import demo_data_dir

        data = demo_data_dir()
    path = local_copy(existing_dir(data, "--calibration"))
    if (path / "meta.json").exists():
        return path
    if not any(path.glob("*.parquet")):
        raise InputNotFoundError(f"--calibration: {path} holds neither tokenised data (meta.json) nor "
                                 "*.parquet sources")
    from f2jax.data import tokenize_sources

    model_dir = as_path(model_dir)
    key = hashlib.sha256(f"{path.resolve()}|{model_dir.resolve()}|{max_length}".encode()).hexdigest()[:16]
    out = _CACHE / key
    if not (out / "meta.json").exists():
        tok = model_dir if (model_dir / "tokenizer.json").exists() else None
        tokenize_sources(path, out, tokenizer_dir=tok, max_length=max_length, workers=1)
    return out


def calibration_batches(data: str | Path, model_dir: str | Path, *, batches: int, batch_size: int = 16,
                        max_length: int = 512, split: str = "train", seed: int = 0,
                        instructions: bool = True, holdout: float = 0.01) -> list[HostBatch]:
    """The first `batches` training batches (the schedule mixes sources), or `batches` held-out
    batches spread evenly over the validation split (which lists sources one after another)."""
    from f2jax.data.pipeline import DataSpec, make_dataset

    if batches < 1:
        raise UserInputError(f"--batches must be >= 1, got {batches}")
    spec = DataSpec(global_batch_size=batch_size, seed=seed, max_length=max_length, instructions=instructions,
                    holdout=holdout)
    ds = make_dataset(tokenized_dir(data, model_dir, max_length), spec, split=split, process_index=0, process_count=1)
    n = min(batches, len(ds))
    if n == 0:
        raise UserInputError(f"--calibration {data}: no {split} batches of {batch_size} rows")
    picks = range(n) if split == "train" else np.linspace(0, len(ds) - 1, n).round().astype(int)
    return [ds[int(i)] for i in picks]
