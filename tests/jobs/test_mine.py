"""Hard-negative mining: equal to a brute-force NumPy reference, each rule on a hand-built case,
and `f2jax data mine` end to end with a tiny random model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from f2jax.jobs.mine import MineParams, apply_rules, mine_embeddings, positive_mask


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from f2jax.testing import make_tiny_qwen3

    return make_tiny_qwen3(tmp_path_factory.mktemp("tiny_mine"), hidden=64, layers=1)


def _brute_force(q, c, row_query, row_pos, p: MineParams, group) -> tuple[list[list[int]], dict]:
    """Full score matrix, full sort (score desc, index asc), rules applied one by one per row."""
    full = q @ c.T
    counts = dict.fromkeys(("skip_top", "positive", "max_score", "margin", "over_limit"), 0)
    out = []
    for qi, pi in zip(row_query, row_pos, strict=True):
        ranked = np.lexsort((np.arange(len(c)), -full[qi]))[: p.top_k]
        pos_groups = {group[row_pos[j]] for j in range(len(row_query)) if row_query[j] == qi}
        pos = float(q[qi] @ c[pi])
        kept: list[int] = []
        for rank, j in enumerate(ranked):
            s = full[qi, j]
            rule = ("skip_top" if rank < p.skip else "positive" if group[j] in pos_groups
                    else "max_score" if s >= p.max_score else "margin" if s >= p.margin * pos
                    else "over_limit" if len(kept) >= p.negatives else None)
            if rule:
                counts[rule] += 1
            else:
                kept.append(int(j))
        out.append(kept)
    return out, counts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_brute_force_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = rng.integers(-2, 3, (230, 8)).astype(np.float32)  # exact integer scores: many ties
    q = rng.integers(-2, 3, (40, 8)).astype(np.float32)
    row_query = rng.integers(0, 40, 90)  # repeated queries with different positives
    near = np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :12]
    row_pos = near[row_query, rng.integers(0, 12, 90)]  # positives among each query's top 12
    group = np.arange(230)
    group[200:] = np.arange(100, 130)  # passages 200.. are whitespace-duplicates of 100..
    p = MineParams(top_k=40, skip=3, max_score=9.5, margin=0.9, negatives=25)
    mined = mine_embeddings(q, c, row_query, row_pos, p, group=group, query_block=16, corpus_block=32)
    expect, counts = _brute_force(q, c, row_query, row_pos, p, group)
    got = [mined.index[r, : mined.count[r]].tolist() for r in range(len(row_query))]
    assert got == expect
    assert mined.dropped == counts
    assert 0 < (mined.count < p.negatives).sum() < 90  # both full and short rows occur
    assert all(v > 0 for v in counts.values())  # every rule fires
    assert (mined.index != row_pos[:, None]).all()  # positive never a negative


def _ranked(scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([scores], np.float32), np.arange(len(scores))[None, :]


def test_rule_skip_top() -> None:
    s, i = _ranked([0.5, 0.4, 0.3, 0.2])
    m = apply_rules(s, i, np.array([0.9]), np.zeros_like(i, bool), MineParams(skip=2, negatives=5))
    assert m.index[0, : m.count[0]].tolist() == [2, 3] and m.dropped["skip_top"] == 2


def test_rule_positive_and_duplicates() -> None:
    index = np.array([[5, 7, 9, 11]])
    row_query, row_pos = np.array([0, 0]), np.array([7, 3])  # one query with two positives
    group = np.arange(12)
    group[11] = group[3]  # passage 11 is passage 3 with other whitespace
    mask = positive_mask(np.repeat(index, 2, 0), row_query, row_pos, group)
    assert mask.tolist() == [[False, True, False, True]] * 2
    s = np.array([[0.5, 0.4, 0.3, 0.2]] * 2, np.float32)
    m = apply_rules(s, np.repeat(index, 2, 0), np.array([0.9, 0.9]), mask, MineParams(skip=0))
    assert m.index[0, : m.count[0]].tolist() == [5, 9] and m.dropped["positive"] == 4


def test_rule_max_score() -> None:
    s, i = _ranked([0.85, 0.8, 0.79, 0.1])
    m = apply_rules(s, i, np.array([0.99]), np.zeros_like(i, bool), MineParams(skip=0, margin=1.0))
    assert m.index[0, : m.count[0]].tolist() == [2, 3] and m.dropped["max_score"] == 2


def test_rule_margin() -> None:
    s, i = _ranked([0.7, 0.665, 0.66, 0.5])  # positive 0.7: keep < 0.665
    m = apply_rules(s, i, np.array([0.7]), np.zeros_like(i, bool), MineParams(skip=0))
    assert m.index[0, : m.count[0]].tolist() == [2, 3] and m.dropped["margin"] == 2


def test_rule_take_first_n_and_ties_by_index() -> None:
    q = np.array([[1.0, 0.0]], np.float32)
    c = np.array([[0.9, 0.1], [0.5, 0.5], [0.5, 0.2], [0.5, 0.9], [0.3, 0.0], [1.0, 0.0]], np.float32)
    p = MineParams(top_k=10, skip=0, max_score=0.8, margin=0.95, negatives=2)
    m = mine_embeddings(q, c, np.array([0]), np.array([5]), p, corpus_block=2)
    assert m.index[0].tolist() == [1, 2]  # 1, 2, 3 tie at 0.5: lower corpus index first
    assert m.dropped == {"skip_top": 0, "positive": 1, "max_score": 1, "margin": 0, "over_limit": 2}


def test_too_few_padded() -> None:
    s, i = _ranked([0.5, 0.4])
    m = apply_rules(s, i, np.array([0.9]), np.zeros_like(i, bool), MineParams(skip=0, negatives=4))
    assert m.count.tolist() == [2] and m.index[0].tolist() == [0, 1, -1, -1]
    assert np.isnan(m.scores[0, 2:]).all()


def test_mine_command_end_to_end(tmp_path, tiny_model_dir) -> None:
    rows = [{"query": f"question {i} about subject {i % 13}", "passage": f"subject {i % 40} passage {i % 7}"}
            for i in range(120)]
    src = tmp_path / "pairs"
    src.mkdir()
    pd.DataFrame(rows).to_parquet(src / "mydata.parquet")
    (src / "manifest.yaml").write_text("mydata: {task: retrieval, instruction: Find the passage.}\n")
    out = tmp_path / "mined"
    cmd = [sys.executable, "-c", "import sys; from f2jax.cli import main; sys.exit(main(sys.argv[1:]))",
           "data", "mine", str(tiny_model_dir), str(src), str(out), "--top-k", "30", "--skip", "2",
           "--max-score", "0.999", "--margin", "1.0", "--negatives", "8", "--min-negatives", "1",
           "--block-size", "16", "--query-block", "32", "--batch-size", "16"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "mydata.mining.json").read_text())
    assert report["corpus"] == len({r["passage"] for r in rows})
    assert report["query_prompt"] == "Instruct: Find the passage.\nQuery: "
    assert sum(report["histogram"]["positive"]) == 120
    written = pd.read_parquet(out / "mydata.parquet")
    assert len(written) == 120 - report["rows_dropped_below_min"]["count"]
    negs = written[[c for c in written.columns if c.startswith("negative_")]]
    for passage, row in zip(written["passage"], negs.itertuples(index=False), strict=True):
        found = [n for n in row if isinstance(n, str)]
        assert passage not in found and len(found) == len(set(found))
    assert "mydata" in (out / "manifest.yaml").read_text()
