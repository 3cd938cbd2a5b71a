"""Read access to a tokenised folder: meta, the per-source index arrays, TFDS record sources."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from f2jax.data import tfds_builder
from f2jax.data.validate import DataValidationError
from f2jax.errors import InputNotFoundError
from f2jax.paths import Path


@dataclass(frozen=True)
class SourceIndex:
    """Everything needed to plan batches of one source without reading its records."""

    name: str
    task: str
    instruction: str | None
    query_len: np.ndarray  # [n]
    query_instructed_len: np.ndarray  # [n]; 0 where the source has no instruction
    passage_id: np.ndarray  # [n]
    negative_ids: np.ndarray  # [n, N]; -1 where a row has no such negative


class TokenizedStore:
    """A folder written by `tokenize_sources`; record sources open lazily (and once)."""

    def __init__(self, path: str | Path, check: bool = True):
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.exists():
            raise InputNotFoundError(f"{meta_file} missing: run `f2jax data tokenize` first")
        self.meta = json.loads(meta_file.read_text())
        self._lock = threading.Lock()
        self._sources: dict[tuple[str, str], object] = {}
        if check:
            self.check_index()

    def _load(self, stem: str) -> np.ndarray:
        return np.load(self.path / "index" / f"{stem}.npy")

    @cached_property
    def doc_len(self) -> np.ndarray:
        return self._load("corpus.doc_len")

    @cached_property
    def sources(self) -> dict[str, SourceIndex]:
        out = {}
        for name, info in sorted(self.meta["sources"].items()):
            out[name] = SourceIndex(
                name=name, task=info["task"], instruction=info.get("instruction"),
                query_len=self._load(f"{name}.query_len"),
                query_instructed_len=self._load(f"{name}.query_instructed_len"),
                passage_id=self._load(f"{name}.passage_id"),
                negative_ids=self._load(f"{name}.negative_ids"),
            )
        return out

    def check_index(self) -> None:
        """Cheap pre-training check of the index arrays: doc ids must exist in the corpus."""
        n_docs = len(self.doc_len)
        if n_docs != self.meta["num_docs"]:
            raise DataValidationError(self.path / "index/corpus.doc_len.npy", None, "doc_len",
                                      f"{n_docs} documents, meta.json says {self.meta['num_docs']}")
        for name, src in self.sources.items():
            for col, ids, low in (("passage_id", src.passage_id[:, None], 0),
                                  ("negative_ids", src.negative_ids, -1)):
                bad = (ids < low) | (ids >= n_docs)
                if bad.any():
                    row = int(np.flatnonzero(bad.any(axis=1))[0])
                    raise DataValidationError(
                        self.path / f"index/{name}.{col}.npy", row, col,
                        f"dangling document id {int(ids[row][bad[row]][0])} "
                        f"(corpus has {n_docs} documents)",
                    )

    def records(self, config: str, split: str):
        """TFDS ArrayRecord data source: config "queries" (split = source) or "corpus"."""
        with self._lock:
            if (config, split) not in self._sources:
                self._sources[config, split] = tfds_builder.data_source(self.path, config, split)
            return self._sources[config, split]
