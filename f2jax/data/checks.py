"""Full validation of a tokenised folder (reads every record): duplicate and dangling doc ids."""

from __future__ import annotations

import numpy as np

from f2jax.data.store import TokenizedStore
from f2jax.data.validate import DataValidationError


def _file(store: TokenizedStore, config: str, split: str) -> str:
    files = sorted((store.path / "f2jax_tokenized" / config).glob(f"*/*-{split}.array_record*"))
    return str(files[0]) if files else f"{store.path}/f2jax_tokenized/{config} split {split}"


def validate_tokenized(path, chunk: int = 4096) -> None:
    """Raise DataValidationError naming file, row and column for the first bad record."""
    store = TokenizedStore(path, check=False)
    corpus = store.records("corpus", "corpus")
    seen: dict[int, int] = {}
    for start in range(0, len(corpus), chunk):
        recs = corpus.__getitems__(list(range(start, min(start + chunk, len(corpus)))))
        for row, rec in enumerate(recs, start):
            doc = int(rec["doc_id"])
            if doc in seen:
                raise DataValidationError(_file(store, "corpus", "corpus"), row, "doc_id",
                                          f"duplicate document id {doc} (first at row {seen[doc]})")
            seen[doc] = row
    for name in store.meta["sources"]:
        src = store.records("queries", name)
        for start in range(0, len(src), chunk):
            recs = src.__getitems__(list(range(start, min(start + chunk, len(src)))))
            for row, rec in enumerate(recs, start):
                for col, ids in (("passage_id", [rec["passage_id"]]),
                                 ("negative_ids", rec["negative_ids"])):
                    bad = [int(i) for i in np.asarray(ids) if i >= 0 and int(i) not in seen]
                    if bad or (col == "passage_id" and int(ids[0]) < 0):
                        raise DataValidationError(_file(store, "queries", name), row, col,
                                                  f"dangling document id {(bad or ids)[0]}")
    store.check_index()
