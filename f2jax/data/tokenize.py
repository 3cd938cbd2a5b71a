"""`f2jax data tokenize`: validate raw sources, deduplicate documents, tokenise in parallel,
write the tokenised form (TFDS ArrayRecord) plus small length/index arrays for batching.

Output layout of OUT:
  f2jax_tokenized/{queries,corpus}/1.0.0/...   TFDS dataset (ArrayRecord)
  index/{source}.{query_len,query_instructed_len,passage_id,negative_ids}.npy,
  index/corpus.doc_len.npy                      lengths and doc ids, so every host can choose
                                                the global batch's bucket without reading records
  meta.json                                     sources, task types, instructions, counts, ids
Re-running on the same input gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os

import numpy as np
from tqdm import tqdm

from f2jax.data.sources import find_sources
from f2jax.data.tasks import DEFAULT_NEGATIVES, instruct
from f2jax.data.validate import validate_source
from f2jax.paths import Path, as_path
from f2jax.storage import local_copy, publish_dir

log = logging.getLogger(__name__)
CHUNK = 2048
#: Below this many texts one process is faster: the Rust tokenizer already uses every core in
#: `encode_batch`, and starting spawned workers costs seconds.
PARALLEL_MIN_TEXTS = 100_000
_WORKER_TOK = None


def _init_worker(tok_json: str, max_length: int) -> None:
    global _WORKER_TOK
    from tokenizers import Tokenizer

    _WORKER_TOK = Tokenizer.from_str(tok_json)
    _WORKER_TOK.enable_truncation(max_length)  # room is kept for the EOS post-processor
    _WORKER_TOK.no_padding()


def _encode(texts: list[str]) -> list[np.ndarray]:
    encs = _WORKER_TOK.encode_batch(texts, add_special_tokens=True)
    return [np.asarray(e.ids, dtype=np.int32) for e in encs]


def encode_parallel(
    tok_json: str, texts: list[str], max_length: int, workers: int, desc: str = "tokenize"
) -> list[np.ndarray]:
    """Token ids per text (truncated to max_length - 1, then EOS), in input order."""
    chunks = [texts[i : i + CHUNK] for i in range(0, len(texts), CHUNK)]
    out: list[np.ndarray] = []
    bar = tqdm(total=len(texts), desc=desc, unit="text", disable=None)
    if workers <= 1 or len(chunks) <= 1 or len(texts) < PARALLEL_MIN_TEXTS:
        _init_worker(tok_json, max_length)
        results = map(_encode, chunks)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(
            workers, initializer=_init_worker, initargs=(tok_json, max_length)
        )
        results = pool.imap(_encode, chunks)  # ordered, so output is deterministic
    try:
        for chunk, ids in zip(chunks, results, strict=True):
            out.extend(ids)
            bar.update(len(chunk))
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return out


def _tokenizer_json(tokenizer_dir: str | Path | None):
    from f2jax.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return tok.backend_tokenizer.to_str(), int(tok.eos_token_id), int(pad)


def tokenize_sources(
    in_dir: str | Path,
    out_dir: str | Path,
    tokenizer_dir: str | Path | None = None,
    max_length: int = 1024,
    workers: int | None = None,
    on_error: str = "raise",
    negatives: dict[str, int] | None = None,
) -> dict:
    """Validate, deduplicate and tokenise every source of `in_dir` into `out_dir`; returns meta."""
    from f2jax.data import tfds_builder

    in_dir, out_dir = local_copy(in_dir), as_path(out_dir)
    needed = {**DEFAULT_NEGATIVES, **(negatives or {})}
    workers = workers if workers is not None else (os.cpu_count() or 1)
    specs = find_sources(in_dir)
    tok_json, eos_id, pad_id = _tokenizer_json(tokenizer_dir)

    doc_of: dict[str, int] = {}  # identical passage/negative texts share one doc id
    sources, queries, instructed = [], [], []
    for spec in specs:
        clean = validate_source(spec.path, spec.task, needed[spec.task], on_error)
        pid = [doc_of.setdefault(p, len(doc_of)) for p in clean.passage]
        nid = [[-1 if t is None else doc_of.setdefault(t, len(doc_of)) for t in row]
               for row in clean.negatives]
        queries.extend(clean.query)
        if spec.instruction:
            instructed.extend(instruct(spec.instruction, q) for q in clean.query)
        sources.append((spec, clean, np.asarray(pid, np.int64),
                        np.asarray(nid, np.int64).reshape(len(pid), -1)))
    docs = list(doc_of)
    del doc_of

    ids = encode_parallel(tok_json, queries + instructed + docs, max_length, workers)
    n_q, n_i = len(queries), len(instructed)
    q_ids, i_ids, d_ids = ids[:n_q], ids[n_q : n_q + n_i], ids[n_q + n_i :]

    # meta.json goes last: a reader (and a rerun's `meta.json` check) never sees a half write
    with publish_dir(out_dir, last=("meta.json",), replace=("meta.json", "f2jax_tokenized", "index")) as local:
        (local / "index").mkdir(parents=True)
        splits, meta_sources, qpos, ipos = {}, {}, 0, 0
        empty = np.zeros(0, np.int32)
        for spec, clean, pid, nid in sources:
            n = len(clean.rows)
            qs = q_ids[qpos : qpos + n]
            qi = i_ids[ipos : ipos + n] if spec.instruction else [empty] * n
            qpos, ipos = qpos + n, ipos + (n if spec.instruction else 0)
            splits[spec.name] = [
                {"row": r, "query": q, "query_instructed": i, "passage_id": p, "negative_ids": ng}
                for r, q, i, p, ng in zip(clean.rows, qs, qi, pid, nid, strict=True)
            ]
            arrays = {
                "query_len": np.asarray([len(q) for q in qs], np.int32),
                "query_instructed_len": np.asarray([len(q) for q in qi], np.int32),
                "passage_id": pid,
                "negative_ids": nid,
            }
            for key, arr in arrays.items():
                np.save(local / "index" / f"{spec.name}.{key}.npy", arr)
            meta_sources[spec.name] = {
                "task": spec.task, "instruction": spec.instruction, "rows": n,
                "skipped": clean.skipped, "skip_reasons": dict(sorted(clean.reasons.items())),
                "negatives": int(nid.shape[1]), "file": spec.path.name,
            }
        np.save(local / "index" / "corpus.doc_len.npy", np.asarray([len(d) for d in d_ids], np.int32))
        tfds_builder.write(local, "queries", splits)
        del splits
        corpus = [{"doc_id": i, "input_ids": d} for i, d in enumerate(d_ids)]
        tfds_builder.write(local, "corpus", {"corpus": corpus})

        meta = {
            "format": "f2jax_tokenized/1", "max_length": max_length, "eos_id": eos_id,
            "pad_id": pad_id, "tokenizer_sha256": hashlib.sha256(tok_json.encode()).hexdigest(),
            "num_docs": len(docs), "sources": meta_sources,
        }
        (local / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    skipped = {k: v["skipped"] for k, v in meta_sources.items() if v["skipped"]}
    log.info("tokenised %d sources, %d queries, %d unique documents into %s (skipped rows: %s)",
             len(sources), len(queries), len(docs), out_dir, skipped or "none")
    return meta
