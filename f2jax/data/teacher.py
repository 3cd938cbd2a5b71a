"""Precomputed teacher embeddings stored with the tokenised data (for teachers too big to co-host):
the layout and its reader. `f2jax.jobs.teacher_embed` writes them: every query (plain and, for
sources with an instruction, instructed) and every corpus document, as raw (un-normalised)
last-token states under `data_dir/teacher/`:

    teacher/meta.json                   teacher path, hidden size, dtypes, hash of the data meta
    teacher/corpus.npy                  [num_docs, H]   by document id
    teacher/{source}.query.npy          [rows, H]       by query record index
    teacher/{source}.query_instructed.npy               (sources with an instruction only)

The pipeline memory-maps these files and gathers rows by the same ids each batch uses.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np

from f2jax.errors import InputNotFoundError, UserInputError
from f2jax.paths import Path, as_path

log = logging.getLogger(__name__)
TEACHER_DIR = "teacher"
FORMAT = "f2jax_teacher/1"


def data_meta_hash(data_dir: str | Path) -> str:
    """sha256 of the tokenised folder's meta.json: a different tokenisation invalidates the vectors."""
    return hashlib.sha256((as_path(data_dir) / "meta.json").read_bytes()).hexdigest()


def read_teacher_meta(data_dir: str | Path) -> dict:
    """The teacher folder's meta; FileNotFoundError if absent, ValueError if stale."""
    data_dir = as_path(data_dir)
    file = data_dir / TEACHER_DIR / "meta.json"
    if not file.exists():
        raise InputNotFoundError(f"{file} missing: run `f2jax data teacher-embed {data_dir} --teacher MODEL_DIR`")
    meta = json.loads(file.read_text())
    if meta.get("data_meta_sha256") != data_meta_hash(data_dir):
        raise UserInputError(f"{file}: teacher embeddings were computed for another tokenisation of "
                         f"{data_dir}; rerun `f2jax data teacher-embed`")
    return meta


class TeacherEmbeddings:
    """Memory-mapped stored vectors; `query(source, key)` and `corpus` are [n, H] arrays."""

    def __init__(self, data_dir: str | Path):
        self.path = as_path(data_dir) / TEACHER_DIR
        self.meta = read_teacher_meta(data_dir)
        self.hidden_size = int(self.meta["hidden_size"])
        self.corpus = np.load(self.path / "corpus.npy", mmap_mode="r")
        self._queries: dict[tuple[str, str], np.ndarray] = {}
        for source, keys in self.meta["queries"].items():
            for key in keys:
                self._queries[source, key] = np.load(self.path / f"{source}.{key}.npy", mmap_mode="r")

    def query(self, source: str, key: str) -> np.ndarray:
        if (source, key) not in self._queries:
            raise KeyError(f"{self.path}: no stored {key} vectors for source {source!r} "
                           f"(stored: {self.meta['queries'].get(source, [])}); rerun "
                           "`f2jax data teacher-embed` for this data.instructions setting")
        return self._queries[source, key]

    @staticmethod
    def gather(array: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """float32 rows of a memory-mapped array, shaped like `ids` + [H]."""
        flat = np.asarray(ids).ravel()
        return np.asarray(array[flat], np.float32).reshape(*np.shape(ids), array.shape[-1])
