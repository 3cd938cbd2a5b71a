"""`f2jax data teacher-embed`: encode the tokenised data once with a teacher too big to co-host
and store its vectors beside the data (layout and reader: `f2jax.data.teacher`)."""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from f2jax.data.store import TokenizedStore
from f2jax.data.teacher import FORMAT, TEACHER_DIR, data_meta_hash
from f2jax.errors import UserInputError
from f2jax.paths import Path, absolute, as_path
from f2jax.storage import local_copy, publish_dir

log = logging.getLogger(__name__)
_CHUNK = 4096  # records read and encoded per call to embed_ids


def _write(encoder, path: Path, seqs_at, n: int, hidden: int, storage: np.dtype, batch_size: int) -> None:
    # `path` is in publish_dir's scratch directory: the folder is published whole afterwards
    out = np.lib.format.open_memmap(path, mode="w+", dtype=storage, shape=(n, hidden))
    for start in range(0, n, _CHUNK):
        idx = list(range(start, min(start + _CHUNK, n)))
        vecs = encoder.embed_ids(seqs_at(idx), batch_size)
        cast = vecs.astype(storage)
        if not np.isfinite(cast).all():
            raise UserInputError(f"{path.name}: teacher vectors overflow {storage} (store float32 instead)")
        out[start : start + len(idx)] = cast
    out.flush()
    del out


def precompute_teacher_embeddings(data_dir: str | Path, teacher_dir: str | Path, *, dtype: str = "bfloat16",
                                  batch_size: int = 64, instructions: bool | None = None,
                                  storage: str | None = None) -> Path:
    """Encode the tokenised data at `data_dir` with the teacher at `teacher_dir`; returns the
    `data_dir/teacher` folder.

    `dtype` is the teacher's compute dtype; vectors are stored as `storage` (default float32 for
    a float32 teacher, else float16). `instructions`: None stores both query variants, True only
    the instructed one (plain for sources without an instruction), False only the plain one;
    the training run's `data.instructions` picks which variant it reads.
    """
    import f2jax

    local_data = local_copy(data_dir)
    store = TokenizedStore(local_data)
    storage_dtype = np.dtype(storage or ("float32" if dtype == "float32" else "float16"))
    if storage_dtype not in (np.float16, np.float32):
        raise ValueError(f"storage must be float16 or float32, got {storage!r}")
    encoder = f2jax.load(teacher_dir, dtype=dtype)
    hidden = int(encoder.config.hidden_size)
    target = as_path(data_dir) / TEACHER_DIR
    with publish_dir(target, last=("meta.json",), replace=("meta.json",)) as out:  # meta.json: complete
        written = _encode_all(encoder, store, out, storage_dtype, batch_size, instructions)
        meta = {"format": FORMAT, "teacher": os.fspath(absolute(teacher_dir)), "hidden_size": hidden,
                "dtype": dtype, "storage": storage_dtype.name, "data_meta_sha256": data_meta_hash(local_data),
                "num_docs": len(store.doc_len), "queries": written}
        (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return target


def _encode_all(encoder, store: TokenizedStore, out: Path, storage_dtype: np.dtype, batch_size: int,
                instructions: bool | None) -> dict[str, list[str]]:
    """Every corpus and query vector file into `out`; returns {source: query keys written}."""
    hidden = int(encoder.config.hidden_size)

    def write(name: str, seqs_at, n: int) -> None:
        log.info("teacher: encoding %d sequences into %s", n, name)
        _write(encoder, out / name, seqs_at, n, hidden, storage_dtype, batch_size)

    corpus = store.records("corpus", "corpus")
    write("corpus.npy", lambda idx: [r["input_ids"] for r in corpus.__getitems__(idx)], len(store.doc_len))
    written: dict[str, list[str]] = {}
    for name, src in store.sources.items():
        queries = store.records("queries", name)
        keys = ["query"] if instructions is not True or not src.instruction else []
        if src.instruction and instructions is not False:
            keys.append("query_instructed")
        for key in keys:
            write(f"{name}.{key}.npy", lambda idx, key=key, rec=queries: [r[key] for r in rec.__getitems__(idx)],
                  len(src.query_len))
        written[name] = keys
    return written
