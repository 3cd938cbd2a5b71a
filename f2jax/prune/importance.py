"""Importance scores on calibration data: which layers, channels and heads matter.

Depth: block influence (ShortGPT), 1 - mean cosine between a block's input and output at real
tokens; optionally the rise of the held-out contrastive loss when the layer alone is dropped.
Width (Minitron activation importance: mean |activation| over a row's real tokens, L2 over
rows): hidden channels from the input of every RMSNorm, MLP channels from the input of
down_proj, query heads from the L2 norm of each head's attention output (input of o_proj).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from f2jax.data.batch import HostBatch
from f2jax.errors import UserInputError
from f2jax.losses import hard_negative_loss, inbatch_loss, mrl_dims
from f2jax.model.config import Qwen3Config
from f2jax.paths import Path, as_path
from f2jax.prune.forward import Forward, last_token

FIELDS = ("block_influence", "hidden", "mlp", "heads", "drop_loss")


@dataclasses.dataclass
class Scores:
    """Higher = more important. hidden [2L+1, H]: rows 2i / 2i+1 are layer i's input /
    post-attention norm inputs, the last row the final norm's; mlp [L, I]; heads [L, q heads];
    drop_loss [L] (held-out loss rise when the layer is dropped) or None."""

    block_influence: np.ndarray
    hidden: np.ndarray
    mlp: np.ndarray
    heads: np.ndarray
    drop_loss: np.ndarray | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def check(self, cfg: Qwen3Config, where: str = "--scores") -> Scores:
        """Raise UserInputError unless every array has the shape `cfg` implies."""
        n = cfg.num_hidden_layers
        want = {"block_influence": (n,), "hidden": (2 * n + 1, cfg.hidden_size),
                "mlp": (n, cfg.intermediate_size), "heads": (n, cfg.num_attention_heads)}
        if self.drop_loss is not None:
            want["drop_loss"] = (n,)
        for name, shape in want.items():
            got = np.shape(getattr(self, name))
            if got != shape:
                raise UserInputError(f"{where}: {name} has shape {got}, the model implies {shape} "
                                     "(scores of another model?)")
        return self

    def save(self, path: str | Path) -> Path:
        """NPZ (arrays + meta JSON) or, for a .json path, plain JSON lists."""
        path = as_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: getattr(self, k) for k in FIELDS if getattr(self, k) is not None}
        if path.suffix == ".json":
            path.write_text(json.dumps({**{k: np.asarray(v).tolist() for k, v in arrays.items()},
                                        "meta": self.meta}))
        else:
            with path.open("wb") as f:
                np.savez(f, **arrays, meta=np.asarray(json.dumps(self.meta)))
        return path

    @classmethod
    def load(cls, path: str | Path, cfg: Qwen3Config) -> Scores:
        path = as_path(path)
        try:
            if path.suffix == ".json":
                raw = json.loads(path.read_text())
                meta = raw.pop("meta", {})
            else:
                with path.open("rb") as handle, np.load(handle) as f:
                    raw = {k: f[k] for k in f.files}
                meta = json.loads(str(raw.pop("meta", "{}")))
            arrays = {k: np.asarray(raw[k], np.float64) for k in FIELDS[:4]}
            drop = raw.get("drop_loss")
        except (OSError, ValueError, KeyError, EOFError) as err:
            raise UserInputError(f"--scores {path}: not a prune scores file ({type(err).__name__}: {err})") from None
        drop = None if drop is None else np.asarray(drop, np.float64)
        return cls(**arrays, drop_loss=drop, meta=meta).check(cfg, f"--scores {path}")


def _sequences(batch: HostBatch, negatives: bool) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    a = batch.arrays
    yield a.query_ids, a.query_mask
    yield a.passage_ids, a.passage_mask
    if negatives:
        t = a.negative_ids.shape[-1]
        yield a.negative_ids.reshape(-1, t), a.negative_mask.reshape(-1, t)


def score(forward: Forward, batches: Sequence[HostBatch], *, negatives: bool = False) -> Scores:
    """Accumulate block influence and Minitron statistics over the calibration batches."""
    cfg = forward.cfg
    n = cfg.num_hidden_layers
    cos_sum, tokens = np.zeros(n), np.zeros(n)
    hidden = np.zeros((2 * n + 1, cfg.hidden_size))
    mlp, heads = np.zeros((n, cfg.intermediate_size)), np.zeros((n, cfg.num_attention_heads))
    for batch in batches:
        for ids, mask in _sequences(batch, negatives):
            _, stats = forward.run(ids, mask, stats=True)
            for i, s in enumerate(stats["layers"]):
                cos_sum[i] += float(s["cos_sum"])
                tokens[i] += float(s["tokens"])
                hidden[2 * i: 2 * i + 2] += s["hidden"]
                mlp[i] += s["mlp"]
                heads[i] += s["heads"]
            hidden[-1] += stats["final"]
    meta = {"batches": len(batches), "tokens": int(tokens[0]), "shape": _shape(cfg)}
    return Scores(block_influence=1.0 - cos_sum / np.maximum(tokens, 1), hidden=np.sqrt(hidden),
                  mlp=np.sqrt(mlp), heads=np.sqrt(heads), meta=meta)


def _shape(cfg: Qwen3Config) -> dict[str, int]:
    return {"hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
            "intermediate_size": cfg.intermediate_size, "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads}


def heldout_loss(forward: Forward, batches: Sequence[HostBatch], skip: Iterable[int] = (), *,
                 temperature: float = 0.05) -> float:
    """Mean over batches of the training objective (in-batch InfoNCE on retrieval sources +
    hard-negative InfoNCE, Matryoshka over the hidden size) with layers `skip` left out."""
    skip = tuple(skip)
    dims = mrl_dims(forward.cfg.hidden_size)
    total = 0.0
    for batch in batches:
        reps = [last_token(forward.run(ids, mask, skip=skip)[0], mask) for ids, mask in _sequences(batch, True)]
        q, p, neg = reps
        neg = neg.reshape(q.shape[0], -1, q.shape[-1])
        loss = hard_negative_loss(q, p, neg, temperature=temperature, mrl_dims=dims)
        if batch.inbatch:
            loss = loss + inbatch_loss(q, p, temperature=temperature, mrl_dims=dims)
        total += float(jnp.asarray(loss))
    return total / max(len(batches), 1)


def drop_loss(forward: Forward, batches: Sequence[HostBatch]) -> tuple[float, np.ndarray]:
    """(held-out loss of the full model, its rise when each layer alone is dropped)."""
    base = heldout_loss(forward, batches)
    rise = [heldout_loss(forward, batches, skip=(i,)) - base for i in range(forward.cfg.num_hidden_layers)]
    return base, np.asarray(rise)
