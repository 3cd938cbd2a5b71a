"""Encode throughput inside mteb: f2jax `MTEBModel` vs sentence-transformers, same model/tasks.

Only time spent inside the encoders' `encode` counts (mteb's own data handling and scoring are
excluded); both run in this process, one warm-up pass each (jit compilation, torch init) first.
"""

from __future__ import annotations

import time
from typing import Any

from f2jax.paths import Path

EXAMPLES = Path(__file__).parents[1] / "eval" / "examples"


class _Timed:
    """Wraps an mteb encoder; accumulates seconds and texts spent in `encode`."""

    def __init__(self, inner: Any):
        self.inner, self.seconds, self.texts = inner, 0.0, 0
        self.mteb_model_meta = inner.mteb_model_meta

    def encode(self, inputs: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = self.inner.encode(inputs, **kwargs)
        self.seconds += time.perf_counter() - start
        self.texts += len(out)
        return out

    def similarity(self, a: Any, b: Any) -> Any:
        return self.inner.similarity(a, b)

    def similarity_pairwise(self, a: Any, b: Any) -> Any:
        return self.inner.similarity_pairwise(a, b)


def _throughput(model: Any, task_dir: Path, repeats: int, batch_size: int) -> dict[str, float]:
    from f2jax.eval.local_tasks import load_local_tasks
    from f2jax.eval.runner import evaluate

    evaluate(model, load_local_tasks(task_dir), batch_size=batch_size)  # warm-up
    timed = _Timed(model)
    for _ in range(repeats):
        evaluate(timed, load_local_tasks(task_dir), batch_size=batch_size)
    return {"texts": timed.texts, "seconds": timed.seconds,
            "texts_per_s": timed.texts / timed.seconds if timed.seconds else float("nan")}


def bench_mteb_throughput(model_dir: str | Path, task_dir: str | Path = EXAMPLES, *,
                          repeats: int = 3, batch_size: int = 32, dtype: str = "float32",
                          max_length: int | None = None,
                          torch_threads: int | None = None) -> dict[str, dict[str, float]]:
    """{"f2jax": {...}, "sentence_transformers": {...}} with texts, seconds, texts_per_s.

    torch_threads: set torch's intra-op threads for the sentence-transformers run (None keeps
    torch's default). On a 2-core machine torch's default of 2 threads ran ~50x slower inside
    mteb than 1 thread (thread contention), so compare both before drawing conclusions.
    """
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
    from sentence_transformers import SentenceTransformer

    import f2jax
    from f2jax.eval.model import MTEBModel
    from f2jax.eval.prompts import sentence_transformers_prompts

    task_dir = Path(task_dir)
    encoder = f2jax.load(model_dir, dtype=dtype, max_length=max_length)
    ours = MTEBModel(encoder, batch_size=batch_size)
    st = SentenceTransformer(str(model_dir), device="cpu")
    if max_length:
        st.max_seq_length = max_length
    theirs = SentenceTransformerEncoderWrapper(st, model_prompts=sentence_transformers_prompts())
    result = {"f2jax": _throughput(ours, task_dir, repeats, batch_size)}
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(torch_threads or previous)
    try:
        result["sentence_transformers"] = _throughput(theirs, task_dir, repeats, batch_size)
    finally:
        torch.set_num_threads(previous)
    return result
