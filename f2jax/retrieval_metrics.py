"""Retrieval metrics in pure NumPy, for evaluation inside the training loop (no mteb, no torch).

Conventions match pytrec_eval / mteb so numbers are comparable with MTEB's:
* scores: [n_queries, n_docs]; higher is better. Ties are broken by document index (lower first).
* qrels: per query, {doc index: graded relevance}; relevance > 0 means relevant. Accepted as a
  mapping {query index: {doc index: rel}}, a sequence of such dicts (or of doc-index lists,
  relevance 1), or a dense [n_queries, n_docs] array.
* nDCG uses linear gains rel / log2(rank + 1) (as trec_eval); the ideal DCG ranks the judged
  relevances in decreasing order.
* Queries with no relevant document are left out of every mean (they have no defined recall).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from f2jax.losses import normalize_rows

QueryJudgements = Mapping[int, float] | Iterable[int]
Qrels = Mapping[int, Mapping[int, float]] | Sequence[QueryJudgements] | np.ndarray


def _per_query(qrels: Qrels, n_queries: int) -> list[dict[int, float]]:
    """Normalise any accepted qrels form to one {doc: rel > 0} dict per query."""
    if isinstance(qrels, np.ndarray):
        if qrels.ndim != 2 or qrels.shape[0] != n_queries:
            raise ValueError(f"dense qrels must be [{n_queries}, n_docs], got {qrels.shape}")
        return [{int(d): float(row[d]) for d in np.flatnonzero(row > 0)} for row in qrels]
    if isinstance(qrels, Mapping):
        rows: list[Any] = [qrels.get(q, {}) for q in range(n_queries)]
        extra = set(qrels) - set(range(n_queries))
        if extra:
            raise ValueError(f"qrels name queries outside [0, {n_queries}): {sorted(extra)[:5]}")
    else:
        rows = list(qrels)
        if len(rows) != n_queries:
            raise ValueError(f"qrels has {len(rows)} queries, scores have {n_queries}")
    out = []
    for row in rows:
        judged = dict(row) if isinstance(row, Mapping) else dict.fromkeys(row, 1.0)
        out.append({int(d): float(r) for d, r in judged.items() if r > 0})
    return out


def _ranks(row: np.ndarray, docs: list[int]) -> np.ndarray:
    """1-based rank of each doc in `row` sorted by decreasing score, ties by index."""
    index = np.arange(row.shape[0])
    return np.array([1 + np.count_nonzero((row > row[d]) | ((row == row[d]) & (index < d)))
                     for d in docs], dtype=np.int64)


def _check(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [n_queries, n_docs], got shape {scores.shape}")
    return scores


def _per_query_metric(scores: np.ndarray, qrels: Qrels, fn: Any) -> float:
    scores = _check(scores)
    values = []
    for row, rel in zip(scores, _per_query(qrels, scores.shape[0]), strict=True):
        if not rel:
            continue
        for d in rel:
            if not 0 <= d < row.shape[0]:
                raise ValueError(f"qrels doc index {d} outside [0, {row.shape[0]})")
        docs = list(rel)
        values.append(fn(_ranks(row, docs), np.array([rel[d] for d in docs])))
    return float(np.mean(values)) if values else 0.0


def ndcg_at_k(scores: np.ndarray, qrels: Qrels, k: int) -> float:
    """Mean nDCG@k over queries with at least one relevant document."""
    def one(ranks: np.ndarray, gains: np.ndarray) -> float:
        hit = ranks <= k
        dcg = np.sum(gains[hit] / np.log2(ranks[hit] + 1))
        ideal = np.sort(gains)[::-1][:k]
        return float(dcg / np.sum(ideal / np.log2(np.arange(2, ideal.size + 2))))
    return _per_query_metric(scores, qrels, one)


def recall_at_k(scores: np.ndarray, qrels: Qrels, k: int) -> float:
    """Mean fraction of a query's relevant documents ranked in the top k."""
    return _per_query_metric(scores, qrels, lambda ranks, _: float(np.mean(ranks <= k)))


def mrr(scores: np.ndarray, qrels: Qrels, k: int | None = None) -> float:
    """Mean reciprocal rank of the first relevant document (0 if it is ranked below k)."""
    def one(ranks: np.ndarray, _: np.ndarray) -> float:
        first = int(ranks.min())
        return 0.0 if k is not None and first > k else 1.0 / first
    return _per_query_metric(scores, qrels, one)


def cosine_scores(query_vecs: np.ndarray, doc_vecs: np.ndarray) -> np.ndarray:
    """[n_queries, n_docs] cosine similarities (float64)."""
    q = normalize_rows(np.asarray(query_vecs, np.float64))
    d = normalize_rows(np.asarray(doc_vecs, np.float64))
    return q @ d.T


def evaluate_retrieval(query_vecs: np.ndarray, doc_vecs: np.ndarray, qrels: Qrels,
                       ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Cosine retrieval metrics: ndcg_at_k, recall_at_k, mrr_at_k for each k, and full mrr.

    Keys follow mteb's names (ndcg_at_10, recall_at_10, mrr_at_10) so logs line up with MTEB.
    """
    scores = cosine_scores(query_vecs, doc_vecs)
    out: dict[str, float] = {}
    for k in ks:
        out[f"ndcg_at_{k}"] = ndcg_at_k(scores, qrels, k)
        out[f"recall_at_{k}"] = recall_at_k(scores, qrels, k)
        out[f"mrr_at_{k}"] = mrr(scores, qrels, k)
    out["mrr"] = mrr(scores, qrels)
    return out
