"""In-training retrieval metrics against a direct NumPy computation of ranks."""

from __future__ import annotations

import numpy as np

from f2jax.train.retrieval_eval import RetrievalAccumulator


def _reference(q: np.ndarray, docs: np.ndarray) -> dict[str, float]:
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    dn = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    scores = qn @ dn.T
    ranks = np.array([1 + np.sum(scores[i] > scores[i, i]) for i in range(len(q))])  # own positive is doc i
    return {
        "ndcg_at_10": float(np.mean(np.where(ranks <= 10, 1.0 / np.log2(ranks + 1), 0.0))),
        "recall_at_1": float(np.mean(ranks <= 1)),
        "recall_at_10": float(np.mean(ranks <= 10)),
        "mrr": float(np.mean(1.0 / ranks)),
    }


def test_metrics_equal_numpy_ranks():
    rng = np.random.default_rng(0)
    acc = RetrievalAccumulator()
    qs, ps, ns = [], [], []
    for _ in range(3):
        p = rng.normal(size=(6, 16))
        q = p + rng.normal(scale=1.2, size=p.shape)  # noisy: ranks spread over 1..many
        n = rng.normal(size=(6, 4, 16))
        acc.add("src", q, p, n)
        qs.append(q), ps.append(p), ns.append(n.reshape(-1, 16))
    got = acc.results()["src"]
    docs = np.concatenate([np.concatenate(ps), np.concatenate(ns)])
    want = _reference(np.concatenate(qs), docs)
    for key, value in want.items():
        assert abs(got[key] - value) < 1e-9, key
    assert 0 < want["recall_at_1"] < 1  # the case is not degenerate
