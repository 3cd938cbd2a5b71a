"""Retrieval quality on held-out rows during training (nDCG@10, recall@k, MRR).

Each held-out query of a retrieval source is ranked against a corpus made of every held-out
positive and hard negative of that source; its own positive is the one relevant document.
(A passage that is the positive of two held-out queries counts as relevant only for its
own row: exact ids would need the corpus index, and the error is one duplicate in the
held-out set.)
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from f2jax.retrieval_metrics import evaluate_retrieval


class RetrievalAccumulator:
    """Collects held-out embeddings per source, then scores them in one pass."""

    def __init__(self, ks: tuple[int, ...] = (1, 10)):
        self.ks = ks
        self._parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = defaultdict(list)

    def add(self, source: str, q: np.ndarray, p: np.ndarray, n: np.ndarray) -> None:
        """q, p: [b, H]; n: [b, K, H] (any scale: scoring is cosine)."""
        self._parts[source].append((np.asarray(q), np.asarray(p), np.asarray(n)))

    def corpus(self, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(queries, documents, qrels as the relevant document index per query)."""
        parts = self._parts[source]
        q = np.concatenate([x[0] for x in parts])
        p = np.concatenate([x[1] for x in parts])
        n = np.concatenate([x[2].reshape(-1, x[2].shape[-1]) for x in parts])
        return q, np.concatenate([p, n]), np.arange(len(q))

    def results(self) -> dict[str, dict[str, float]]:
        out = {}
        for source in self._parts:
            q, docs, relevant = self.corpus(source)
            qrels = [{int(d): 1.0} for d in relevant]
            out[source] = evaluate_retrieval(q, docs, qrels, ks=self.ks)
        return out
