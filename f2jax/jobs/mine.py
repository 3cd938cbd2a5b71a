"""`f2jax data mine`: hard negatives for (query, passage) pairs, the way the F2LLM data was mined.

For each query: retrieve the top `top_k` passages of the deduplicated corpus by exact blocked
search (f2jax.jobs.topk), then apply the rules in this order, each candidate counted under the
first rule that drops it: skip the top `skip` ranks (likely false negatives), drop the positive
itself, the query's other positives and whitespace-duplicates of them, drop scores >= `max_score`,
drop scores >= `margin` x the positive's score, keep the first `negatives`. The report says what
each rule dropped and which rows came out short, so nothing disappears unexplained.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from f2jax.data.importer import publish_source
from f2jax.data.sources import read_manifest
from f2jax.data.tasks import DEFAULT_NEGATIVES, instruct
from f2jax.data.validate import validate_source
from f2jax.errors import UserInputError
from f2jax.jobs.topk import blocked_topk
from f2jax.paths import Path, as_path, existing
from f2jax.storage import local_copy, publish_file

log = logging.getLogger(__name__)
RULES = ("skip_top", "positive", "max_score", "margin", "over_limit")
HIST_EDGES = np.linspace(-1.0, 1.0, 41)


@dataclass(frozen=True)
class MineParams:
    """The mining recipe; defaults are F2LLM's (top 100, skip 5, < 0.8, < 95 % of positive, 24)."""

    top_k: int = 100
    skip: int = 5
    max_score: float = 0.8
    margin: float = 0.95
    negatives: int = 24

    def check(self) -> None:
        if self.top_k < 1 or self.negatives < 1 or self.skip < 0:
            raise UserInputError(f"need top_k >= 1, negatives >= 1, skip >= 0; got {self}")


@dataclass
class Mined:
    """Per row: chosen corpus indices (-1 padded), their scores, the positive's score; rule counts."""

    index: np.ndarray  # [rows, negatives] int64
    scores: np.ndarray  # [rows, negatives] float32 (nan where padded)
    count: np.ndarray  # [rows] negatives found
    pos_score: np.ndarray  # [rows]
    dropped: dict[str, int]


def apply_rules(scores: np.ndarray, index: np.ndarray, pos_score: np.ndarray, is_positive: np.ndarray,
                p: MineParams) -> Mined:
    """The filter rules, in order, on each row's ranked candidates (scores/index [rows, k])."""
    rows, k = scores.shape
    rank_ok = np.arange(k)[None, :] >= p.skip
    pos_ok = rank_ok & ~is_positive
    max_ok = pos_ok & (scores < p.max_score)
    margin_ok = max_ok & (scores < p.margin * pos_score[:, None])
    take = margin_ok & (np.cumsum(margin_ok, axis=1) <= p.negatives)
    dropped = {
        "skip_top": rows * min(p.skip, k),
        "positive": int((rank_ok & ~pos_ok).sum()),
        "max_score": int((pos_ok & ~max_ok).sum()),
        "margin": int((max_ok & ~margin_ok).sum()),
        "over_limit": int((margin_ok & ~take).sum()),
    }
    count = take.sum(axis=1)
    order = np.argsort(~take, axis=1, kind="stable")[:, : p.negatives]  # kept ones first, rank order
    chosen = np.take_along_axis(take, order, axis=1)
    out_i = np.full((rows, p.negatives), -1, np.int64)
    out_s = np.full((rows, p.negatives), np.nan, np.float32)
    width = min(p.negatives, k)
    out_i[:, :width] = np.where(chosen, np.take_along_axis(index, order, axis=1), -1)
    out_s[:, :width] = np.where(chosen, np.take_along_axis(scores, order, axis=1), np.nan)
    return Mined(out_i, out_s, count, pos_score, dropped)


def positive_mask(index: np.ndarray, row_query: np.ndarray, row_pos: np.ndarray,
                  group: np.ndarray) -> np.ndarray:
    """[rows, k]: candidates in the same duplicate group as any positive of the row's query."""
    n_groups = int(group.max()) + 1 if group.size else 1
    keys = np.unique(row_query.astype(np.int64) * n_groups + group[row_pos])
    cand = row_query.astype(np.int64)[:, None] * n_groups + group[np.maximum(index, 0)]
    return np.isin(cand, keys) & (index >= 0)


def mine_embeddings(q_emb: np.ndarray, c_emb: np.ndarray, row_query: np.ndarray, row_pos: np.ndarray,
                    p: MineParams, *, group: np.ndarray | None = None, query_block: int = 256,
                    corpus_block: int = 4096, mesh: Any = None, progress: Any = None) -> Mined:
    """The model-free core: blocked exact top-k of the unique queries, then the rules per row."""
    p.check()
    group = np.arange(len(c_emb)) if group is None else np.asarray(group)
    scores, index = blocked_topk(q_emb, c_emb, p.top_k, query_block=query_block,
                                 corpus_block=corpus_block, mesh=mesh, progress=progress)
    scores, index = scores[row_query], index[row_query]
    pos_score = np.einsum("nd,nd->n", q_emb[row_query], c_emb[row_pos]).astype(np.float32)
    return apply_rules(scores, index, pos_score, positive_mask(index, row_query, row_pos, group), p)


def _unique(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Distinct texts in first-seen order and each input's position among them."""
    seen: dict[str, int] = {}
    ids = np.array([seen.setdefault(t, len(seen)) for t in texts], np.int64)
    return list(seen), ids


def encode_texts(encoder: Any, texts: list[str], *, prompt: str | None, batch_size: int,
                 dim: int | None, desc: str) -> np.ndarray:
    """Normalised embeddings, encoded in length-sorted chunks so buckets stay tight, with a bar."""
    out = np.empty((len(texts), dim or encoder.config.hidden_size), np.float32)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    chunk = batch_size * 16
    with tqdm(total=len(texts), desc=desc, unit="text", disable=None) as bar:
        for start in range(0, len(texts), chunk):
            rows = order[start:start + chunk]
            out[rows] = encoder.encode([texts[i] for i in rows], prompt=prompt or None,
                                       batch_size=batch_size, dim=dim)
            bar.update(len(rows))
    return out


def resolve_pairs(pairs: str | Path, source: str | None = None) -> tuple[Path, str, str, str | None]:
    """(parquet, name, task, instruction) of PAIRS: a parquet file or a folder with one source."""
    pairs = local_copy(existing(pairs, "PAIRS"))
    if pairs.is_dir():
        names = sorted(f.stem for f in pairs.glob("*.parquet"))
        name = source or (names[0] if len(names) == 1 else None)
        if name is None or name not in names:
            raise UserInputError(f"{pairs}: holds sources {names}; choose one with --source")
        pairs = pairs / f"{name}.parquet"
    entry = read_manifest(pairs.parent).get(pairs.stem, {})
    return pairs, pairs.stem, entry.get("task", "retrieval"), entry.get("instruction")


def histogram(values: np.ndarray) -> list[int]:
    values = values[np.isfinite(values)]
    return np.histogram(np.clip(values, -1.0, 1.0), HIST_EDGES)[0].tolist()


def mine_source(model: str | Path | Any, pairs: str | Path, out: str | Path, params: MineParams = MineParams(),
                *, source: str | None = None, prompt: str | None = None, query_prompt_name: str | None = None,
                batch_size: int = 64, query_block: int = 256, block_size: int = 4096, dim: int | None = None,
                min_negatives: int | None = None, dtype: str = "float32", max_length: int | None = None,
                on_error: str = "raise", mesh: Any = None) -> dict:
    """Mine negatives for one source; writes OUT/{name}.parquet, its manifest entry and
    OUT/{name}.mining.json. `model` is a path (loaded with f2jax.load) or an Encoder."""
    params.check()
    path, name, task, instruction = resolve_pairs(pairs, source)
    clean = validate_source(path, task, needed_negatives=0, on_error=on_error)
    if isinstance(model, str | os.PathLike):
        import f2jax

        kwargs = {"mesh": mesh, **({"max_length": max_length} if max_length else {})}
        encoder = f2jax.load(model, dtype=dtype, **kwargs)
    else:
        encoder = model
    if prompt is None and query_prompt_name is not None:
        if query_prompt_name not in encoder.prompts:
            raise UserInputError(f"--query-prompt-name {query_prompt_name!r} not in {sorted(encoder.prompts)}")
        prompt = encoder.prompts[query_prompt_name]
    if prompt is None:
        prompt = instruct(instruction, "") if instruction else encoder.prompts.get("query", "")
    corpus, row_pos = _unique(clean.passage)
    queries, row_query = _unique(clean.query)
    _, group = _unique([" ".join(t.split()) for t in corpus])
    t0 = time.perf_counter()
    c_emb = encode_texts(encoder, corpus, prompt=encoder.prompts.get("document"), batch_size=batch_size,
                         dim=dim, desc="corpus")
    t1 = time.perf_counter()
    q_emb = encode_texts(encoder, queries, prompt=prompt, batch_size=batch_size, dim=dim, desc="queries")
    t2 = time.perf_counter()
    with tqdm(total=len(queries), desc="top-k", unit="query", disable=None) as bar:
        mined = mine_embeddings(q_emb, c_emb, row_query, row_pos, params, group=group, query_block=query_block,
                                corpus_block=block_size, mesh=mesh, progress=bar)
    t3 = time.perf_counter()
    need = DEFAULT_NEGATIVES[task] if min_negatives is None else min_negatives
    keep = mined.count >= need
    short = np.flatnonzero(mined.count < params.negatives)
    rows = np.asarray(clean.rows)
    report = {
        "source": str(path), "output": os.fspath(as_path(out) / f"{name}.parquet"), "task": task,
        "params": asdict(params), "query_prompt": prompt, "min_negatives": need,
        "rows": len(clean.rows), "rows_skipped_invalid": clean.skipped, "invalid_reasons": dict(clean.reasons),
        "unique_queries": len(queries), "corpus": len(corpus), "duplicate_passages": len(clean.passage) - len(corpus),
        "candidates": int(mined.count.size * min(params.top_k, len(corpus))),
        "dropped_per_rule": mined.dropped, "kept_negatives": int(mined.count.sum()),
        "too_few": {"count": int(short.size), "rows": rows[short].tolist(),
                    "examples": [clean.query[i] for i in short[:10]]},
        "rows_dropped_below_min": {"count": int((~keep).sum()), "rows": rows[~keep].tolist()},
        "histogram": {"edges": HIST_EDGES.round(3).tolist(), "positive": histogram(mined.pos_score),
                      "kept_negative": histogram(mined.scores.ravel())},
        "timing_s": {"encode_corpus": t1 - t0, "encode_queries": t2 - t1, "topk_and_rules": t3 - t2},
        "throughput": {"corpus_passages_per_s": len(corpus) / max(t1 - t0, 1e-9),
                       "queries_per_s": len(queries) / max(t3 - t1, 1e-9),
                       "topk_queries_per_s": len(queries) / max(t3 - t2, 1e-9)},
    }
    report_file = as_path(out) / f"{name}.mining.json"
    with publish_file(report_file) as local:
        local.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    if not keep.any():
        raise UserInputError(f"{path}: no row got {need} negatives (see {report_file}); "
                             "lower --min-negatives, --skip or raise --max-score/--margin/--top-k")
    kept = np.flatnonzero(keep)
    negatives = [[corpus[j] for j in mined.index[i, : mined.count[i]]] for i in kept]
    publish_source(out, name, task, instruction, [clean.query[i] for i in kept], [clean.passage[i] for i in kept],
                   negatives, needed_negatives=need)
    return report
