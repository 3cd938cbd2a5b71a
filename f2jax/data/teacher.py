"""Precomputed teacher embeddings stored with the tokenised data (for teachers too big to co-host).

`precompute_teacher_embeddings` encodes every query (plain and, for sources with an
instruction, instructed) and every corpus document once with the teacher, and writes raw
(un-normalised) last-token states under `data_dir/teacher/`:

    teacher/meta.json                   teacher path, hidden size, dtypes, hash of the data meta
    teacher/corpus.npy                  [num_docs, H]   by document id
    teacher/{source}.query.npy          [rows, H]       by query record index
    teacher/{source}.query_instructed.npy               (sources with an instruction only)

The pipeline memory-maps these files and gathers rows by the same ids each batch uses.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from f2jax.data.store import TokenizedStore
from f2jax.errors import InputNotFoundError, UserInputError

log = logging.getLogger(__name__)
TEACHER_DIR = "teacher"
FORMAT = "f2jax_teacher/1"
_CHUNK = 4096  # records read and encoded per call to embed_ids


def data_meta_hash(data_dir: str | Path) -> str:
    """sha256 of the tokenised folder's meta.json: a different tokenisation invalidates the vectors."""
    return hashlib.sha256((Path(data_dir) / "meta.json").read_bytes()).hexdigest()


def _write(encoder, path: Path, seqs_at, n: int, hidden: int, storage: np.dtype, batch_size: int) -> None:
    out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=storage, shape=(n, hidden))
    for start in range(0, n, _CHUNK):
        idx = list(range(start, min(start + _CHUNK, n)))
        vecs = encoder.embed_ids(seqs_at(idx), batch_size)
        cast = vecs.astype(storage)
        if not np.isfinite(cast).all():
            raise UserInputError(f"{path.name}: teacher vectors overflow {storage} (store float32 instead)")
        out[start : start + len(idx)] = cast
    out.flush()
    del out
    path.with_suffix(".tmp.npy").replace(path)


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

    data_dir = Path(data_dir)
    store = TokenizedStore(data_dir)
    storage_dtype = np.dtype(storage or ("float32" if dtype == "float32" else "float16"))
    if storage_dtype not in (np.float16, np.float32):
        raise ValueError(f"storage must be float16 or float32, got {storage!r}")
    encoder = f2jax.load(teacher_dir, dtype=dtype)
    hidden = int(encoder.config.hidden_size)
    out = data_dir / TEACHER_DIR
    out.mkdir(exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # written last: its presence marks a complete folder

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
    meta = {"format": FORMAT, "teacher": str(Path(teacher_dir).resolve()), "hidden_size": hidden,
            "dtype": dtype, "storage": storage_dtype.name, "data_meta_sha256": data_meta_hash(data_dir),
            "num_docs": len(store.doc_len), "queries": written}
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return out


def read_teacher_meta(data_dir: str | Path) -> dict:
    """The teacher folder's meta; FileNotFoundError if absent, ValueError if stale."""
    data_dir = Path(data_dir)
    file = data_dir / TEACHER_DIR / "meta.json"
    if not file.exists():
        raise InputNotFoundError(f"{file} missing: run `f2jax data teacher-embed {data_dir} --teacher MODEL_DIR`")
    meta = json.loads(file.read_text())
    if meta.get("data_meta_sha256") != data_meta_hash(data_dir):
        raise UserInputError(f"{file}: teacher embeddings were computed for another tokenisation of "
                         f"{data_dir}; rerun `f2jax data teacher-embed`")
    return meta


class TeacherEmbeddings:
    """Memory-mapped stored vectors; `query(source, key)` and `corpus` are [n, H] arrays."""

    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / TEACHER_DIR
        self.meta = read_teacher_meta(data_dir)
        self.hidden_size = int(self.meta["hidden_size"])
        self.corpus = np.load(self.path / "corpus.npy", mmap_mode="r")
        self._queries: dict[tuple[str, str], np.ndarray] = {}
        for source, keys in self.meta["queries"].items():
            for key in keys:
                self._queries[source, key] = np.load(self.path / f"{source}.{key}.npy", mmap_mode="r")

    def query(self, source: str, key: str) -> np.ndarray:
        if (source, key) not in self._queries:
            raise KeyError(f"{self.path}: no stored {key} vectors for source {source!r} "
                           f"(stored: {self.meta['queries'].get(source, [])}); rerun "
                           "`f2jax data teacher-embed` for this data.instructions setting")
        return self._queries[source, key]

    @staticmethod
    def gather(array: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """float32 rows of a memory-mapped array, shaped like `ids` + [H]."""
        flat = np.asarray(ids).ravel()
        return np.asarray(array[flat], np.float32).reshape(*np.shape(ids), array.shape[-1])
