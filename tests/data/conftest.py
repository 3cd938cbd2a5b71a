"""Shared fixtures: a small raw dataset with every task type, tokenised once per session."""

from __future__ import annotations

import pandas as pd
import pytest

INSTRUCTION = "Find the matching answer."


def _rows(prefix: str, n: int, n_neg: int, n_docs: int) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"query": f"{prefix} question number {i}", "passage": f"{prefix} doc {i % n_docs}"}
        for j in range(1, n_neg + 1):
            row[f"negative_{j}"] = f"{prefix} doc {(i + j) % n_docs}"
        rows.append(row)
    return rows


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    ret = _rows("ret", 200, 24, 60)
    for r in ret[:20]:  # a negative identical to the positive: the sampler must avoid it
        r["negative_3"] = r["passage"]
    pd.DataFrame(ret).to_parquet(d / "retr_a.parquet")
    pd.DataFrame(_rows("instr", 120, 24, 40)).to_parquet(d / "retr_instr.parquet")
    pd.DataFrame(_rows("clu", 90, 24, 30)).to_parquet(d / "clus.parquet")
    pd.DataFrame(_rows("cls", 70, 1, 5)).to_parquet(d / "cls.parquet")
    pd.DataFrame(_rows("tiny", 5, 24, 10)).to_parquet(d / "tiny.parquet")
    (d / "manifest.yaml").write_text(
        f'retr_instr:\n  task: retrieval\n  instruction: "{INSTRUCTION}"\n'
        "clus: clustering\ncls: classification\n"
    )
    return d


@pytest.fixture(scope="session")
def tok_dir(raw_dir, tmp_path_factory):
    from f2jax.data.tokenize import tokenize_sources

    out = tmp_path_factory.mktemp("tok")
    tokenize_sources(raw_dir, out, max_length=64, workers=1)
    return out


@pytest.fixture(scope="session")
def tokenizer():
    from f2jax.tokenizer import load_tokenizer

    return load_tokenizer()
