"""NumPy retrieval metrics vs hand computation, pytrec_eval, and mteb's own run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytrec_eval
from conftest import EXAMPLES

from f2jax.eval.local_tasks import load_local_tasks, read_qrels
from f2jax.eval.model import MTEBModel
from f2jax.eval.runner import evaluate
from f2jax.retrieval_metrics import evaluate_retrieval, mrr, ndcg_at_k, recall_at_k

SCORES = np.array([[0.9, 0.1, 0.5, 0.3],    # ranking d0 d2 d3 d1
                   [0.2, 0.8, 0.4, 0.6]])   # ranking d1 d3 d2 d0
QRELS = {0: {2: 1, 1: 1}, 1: {0: 2, 3: 1}}


def test_hand_computed():
    # q0: relevant at ranks 2 and 4; q1: rel 2 at rank 4, rel 1 at rank 2
    ndcg2_q0 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    ndcg2_q1 = (1 / np.log2(3)) / (2 + 1 / np.log2(3))
    assert ndcg_at_k(SCORES, QRELS, 2) == pytest.approx((ndcg2_q0 + ndcg2_q1) / 2)
    ndcg4_q0 = (1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3))
    ndcg4_q1 = (1 / np.log2(3) + 2 / np.log2(5)) / (2 + 1 / np.log2(3))
    assert ndcg_at_k(SCORES, QRELS, 4) == pytest.approx((ndcg4_q0 + ndcg4_q1) / 2)
    assert recall_at_k(SCORES, QRELS, 1) == 0.0
    assert recall_at_k(SCORES, QRELS, 2) == pytest.approx(0.5)
    assert recall_at_k(SCORES, QRELS, 3) == pytest.approx((0.5 + 0.5) / 2)
    assert recall_at_k(SCORES, QRELS, 4) == 1.0
    assert mrr(SCORES, QRELS) == pytest.approx(0.5)
    assert mrr(SCORES, QRELS, k=1) == 0.0


def test_qrels_forms_agree_and_unjudged_queries_are_skipped():
    dense = np.zeros((3, 4))
    dense[0, [1, 2]] = 1
    dense[1, 0], dense[1, 3] = 2, 1
    scores = np.vstack([SCORES, [[1, 0, 0, 0]]])
    want = ndcg_at_k(SCORES, QRELS, 3)
    assert ndcg_at_k(scores, {**QRELS, 2: {0: 0}}, 3) == pytest.approx(want)
    assert ndcg_at_k(scores, dense, 3) == pytest.approx(want)
    assert recall_at_k(scores, [[1, 2], [0, 3], []], 2) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        ndcg_at_k(SCORES, {0: {7: 1}}, 3)


def test_ties_break_by_document_index():
    scores = np.array([[0.5, 0.5, 0.5]])
    assert mrr(scores, {0: {1: 1}}) == pytest.approx(0.5)
    assert recall_at_k(scores, {0: {0: 1}}, 1) == 1.0


def test_matches_pytrec_eval_on_random_graded_qrels():
    rng = np.random.default_rng(0)
    n_q, n_d = 20, 50
    scores = rng.normal(size=(n_q, n_d))
    qrels = {q: {int(d): int(rng.integers(1, 4)) for d in rng.choice(n_d, rng.integers(1, 6),
                                                                      replace=False)}
             for q in range(n_q)}
    run = {f"q{q}": {f"d{d}": float(scores[q, d]) for d in range(n_d)} for q in range(n_q)}
    trec_qrels = {f"q{q}": {f"d{d}": r for d, r in rel.items()} for q, rel in qrels.items()}
    ev = pytrec_eval.RelevanceEvaluator(trec_qrels, {"ndcg_cut.1,5,10", "recall.1,5,10",
                                                     "recip_rank"})
    per_query = ev.evaluate(run)
    for k in (1, 5, 10):
        ref = np.mean([v[f"ndcg_cut_{k}"] for v in per_query.values()])
        assert ndcg_at_k(scores, qrels, k) == pytest.approx(ref, abs=1e-9)
        ref = np.mean([v[f"recall_{k}"] for v in per_query.values()])
        assert recall_at_k(scores, qrels, k) == pytest.approx(ref, abs=1e-9)
    ref = np.mean([v["recip_rank"] for v in per_query.values()])
    assert mrr(scores, qrels) == pytest.approx(ref, abs=1e-9)


class Keeper(MTEBModel):
    """Keeps the embeddings mteb asked for, by prompt type, with their texts."""

    def encode(self, inputs, *, prompt_type=None, **kwargs):
        texts = [t for batch in inputs for t in batch["text"]]
        vectors = super().encode([{"text": texts}], prompt_type=prompt_type, **kwargs)
        self.kept[getattr(prompt_type, "value", None)] = dict(zip(texts, vectors, strict=True))
        return vectors


def test_matches_mteb_on_the_example_task(tiny):
    model = Keeper(tiny[0])
    model.kept = {}
    result = evaluate(model, load_local_tasks(EXAMPLES / "science_qa"))
    reported = result.task_results[0].scores["test"][0]
    folder = EXAMPLES / "science_qa"
    queries = [json.loads(line) for line in (folder / "queries.jsonl").open()]
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").open()]
    q_vecs = np.stack([model.kept["query"][q["text"]] for q in queries])
    d_vecs = np.stack([model.kept["document"][d["text"]] for d in corpus])
    q_index = {q["id"]: i for i, q in enumerate(queries)}
    d_index = {d["id"]: i for i, d in enumerate(corpus)}
    qrels = {q_index[q]: {d_index[d]: r for d, r in docs.items()}
             for q, docs in read_qrels(folder / "qrels.tsv").items()}
    ours = evaluate_retrieval(q_vecs, d_vecs, qrels, ks=(1, 3, 5, 10))
    for k in (1, 3, 5, 10):
        for name in ("ndcg", "recall", "mrr"):
            key = f"{name}_at_{k}"
            assert ours[key] == pytest.approx(reported[key], abs=1e-5), key
    assert 0 < ours["ndcg_at_10"] < 1
