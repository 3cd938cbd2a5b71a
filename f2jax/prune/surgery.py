"""Target shapes, kept-unit selection and the weight surgery on named Hugging Face tensors.

One kept hidden-channel set is applied everywhere the residual stream appears: embedding
columns, every RMSNorm weight, q/k/v/gate/up input columns, o/down output rows. RMSNorm then
averages over the kept channels only; Minitron accepts that shift and distillation repairs it.
Kept hidden channels are placed so that a kept channel c < new width stays at position c: the
student's leading dims (its Matryoshka prefixes, and what KD compares with the teacher's
leading dims) start as the teacher's own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from f2jax.errors import UserInputError
from f2jax.model.config import Qwen3Config
from f2jax.model.presets import SHAPES
from f2jax.prune.importance import Scores

PRESETS = ("80m", "160m", "330m")
_FLAGS = {"hidden_size": "--hidden", "num_hidden_layers": "--layers", "intermediate_size": "--intermediate",
          "num_attention_heads": "--heads", "num_key_value_heads": "--kv-heads"}


@dataclasses.dataclass(frozen=True)
class Target:
    """The pruned shape; heads default to the source's (head pruning is off in presets)."""

    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int

    @classmethod
    def of(cls, cfg: Qwen3Config) -> Target:
        return cls(**{k: getattr(cfg, k) for k in _FLAGS})


def resolve_target(cfg: Qwen3Config, preset: str | None = None, **dims: int | None) -> Target:
    """The source's shape, overridden by the preset, then by explicit dims; validated."""
    values = dataclasses.asdict(Target.of(cfg))
    if preset is not None:
        if preset not in PRESETS:
            raise UserInputError(f"--preset must be one of {PRESETS}, got {preset!r}")
        values.update({k: SHAPES[preset][k] for k in ("hidden_size", "num_hidden_layers", "intermediate_size")})
    values.update({k: v for k, v in dims.items() if v is not None})
    target = Target(**values)
    check_target(cfg, target)
    return target


def check_target(cfg: Qwen3Config, target: Target) -> None:
    for key, flag in _FLAGS.items():
        new, old = getattr(target, key), getattr(cfg, key)
        if new < 1:
            raise UserInputError(f"{flag} must be >= 1, got {new}")
        if new > old:
            raise UserInputError(f"{flag} {new} exceeds the model's {key} {old}: pruning only removes units")
    if target.num_attention_heads % target.num_key_value_heads:
        raise UserInputError(f"--heads {target.num_attention_heads} must be a multiple of --kv-heads "
                             f"{target.num_key_value_heads} (every KV group keeps the same query heads)")
    per_group = target.num_attention_heads // target.num_key_value_heads
    old_group = cfg.num_attention_heads // cfg.num_key_value_heads
    if per_group > old_group:
        raise UserInputError(f"--heads/--kv-heads: {per_group} query heads per KV group exceed the model's "
                             f"{old_group}; keep more KV groups or fewer query heads")


def target_config(cfg: Qwen3Config, target: Target) -> Qwen3Config:
    return dataclasses.replace(cfg, **dataclasses.asdict(target))


def intermediate_targets(cfg: Qwen3Config, target: Target, steps: int) -> list[Target]:
    """`steps` shapes moving linearly from the source to `target` (the last one is `target`)."""
    if steps < 1:
        raise UserInputError(f"--steps must be >= 1, got {steps}")
    src = Target.of(cfg)
    out = []
    for k in range(1, steps + 1):
        def lerp(a: int, b: int, k: int = k) -> int:
            return int(round(a + (b - a) * k / steps))

        kv = lerp(src.num_key_value_heads, target.num_key_value_heads)
        per = lerp(src.num_attention_heads // src.num_key_value_heads,
                   target.num_attention_heads // target.num_key_value_heads)
        out.append(Target(lerp(src.hidden_size, target.hidden_size),
                          lerp(src.num_hidden_layers, target.num_hidden_layers),
                          lerp(src.intermediate_size, target.intermediate_size), kv * per, kv))
    return out


@dataclasses.dataclass(frozen=True)
class Plan:
    """Kept units, as indices into the source: layers (ascending), hidden channels (in their
    new order), and per kept layer its MLP channels and query heads (KV groups follow)."""

    layers: np.ndarray
    hidden: np.ndarray
    mlp: list[np.ndarray]
    heads: list[np.ndarray]

    def summary(self) -> dict[str, list[int]]:
        return {"layers_kept": self.layers.tolist()}


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, ascending (stable: ties keep the lower index)."""
    return np.sort(np.argsort(-np.asarray(scores), kind="stable")[:k])


def prefix_aligned(keep: np.ndarray) -> np.ndarray:
    """Order kept channels so each kept c < len(keep) sits at position c; the rest fill the gaps."""
    n = len(keep)
    out = np.full(n, -1, np.int64)
    low = keep[keep < n]
    out[low] = low
    out[out < 0] = keep[keep >= n]
    return out


def make_plan(cfg: Qwen3Config, scores: Scores, target: Target, depth: str = "block_influence") -> Plan:
    """Choose what to keep: layers by `depth` ('block_influence' or 'drop_loss'), then hidden
    channels (summed over the kept layers' norm inputs and the final norm's), MLP channels and,
    per layer, KV groups (by their query heads' total) and query heads within each group."""
    layer_scores = scores.block_influence if depth == "block_influence" else scores.drop_loss
    if layer_scores is None:
        raise UserInputError(f"--depth-metric {depth}: the scores file has no {depth} (rescore with it)")
    layers = _top(layer_scores, target.num_hidden_layers)
    rows = np.concatenate([np.stack([2 * layers, 2 * layers + 1], 1).ravel(), [2 * cfg.num_hidden_layers]])
    hidden = prefix_aligned(_top(scores.hidden[rows].sum(0), target.hidden_size))
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    per = target.num_attention_heads // target.num_key_value_heads
    heads = []
    for i in layers:
        h = scores.heads[i].reshape(cfg.num_key_value_heads, group)
        groups = _top(h.sum(1), target.num_key_value_heads)
        heads.append(np.concatenate([g * group + _top(h[g], per) for g in groups]))
    mlp = [_top(scores.mlp[i], target.intermediate_size) for i in layers]
    return Plan(layers, hidden, mlp, heads)


def _rows(w: np.ndarray, heads: np.ndarray, head_dim: int) -> np.ndarray:
    idx = (heads[:, None] * head_dim + np.arange(head_dim)[None]).ravel()
    return w[idx]


def _groups(heads: np.ndarray, group: int) -> np.ndarray:
    """KV groups of the kept query heads, in the order the heads list them (group by group)."""
    g = heads // group
    return g[np.sort(np.unique(g, return_index=True)[1])]


def apply_plan(cfg: Qwen3Config, tensors: Mapping[str, np.ndarray], plan: Plan) -> tuple[Qwen3Config, dict]:
    """(pruned config, pruned tensors); layers renumbered 0..L'-1."""
    d, hid = cfg.head_dim, plan.hidden
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    out = {"embed_tokens.weight": tensors["embed_tokens.weight"][:, hid], "norm.weight": tensors["norm.weight"][hid]}
    for new, (old, mlp, heads) in enumerate(zip(plan.layers.tolist(), plan.mlp, plan.heads, strict=True)):
        src, dst = f"layers.{old}.", f"layers.{new}."
        kv = _groups(heads, group)
        t = {k[len(src):]: v for k, v in tensors.items() if k.startswith(src)}
        p = {
            "input_layernorm.weight": t["input_layernorm.weight"][hid],
            "post_attention_layernorm.weight": t["post_attention_layernorm.weight"][hid],
            "self_attn.q_proj.weight": _rows(t["self_attn.q_proj.weight"], heads, d)[:, hid],
            "self_attn.k_proj.weight": _rows(t["self_attn.k_proj.weight"], kv, d)[:, hid],
            "self_attn.v_proj.weight": _rows(t["self_attn.v_proj.weight"], kv, d)[:, hid],
            "self_attn.o_proj.weight": _rows(t["self_attn.o_proj.weight"].T, heads, d).T[hid],
            "self_attn.q_norm.weight": t["self_attn.q_norm.weight"],
            "self_attn.k_norm.weight": t["self_attn.k_norm.weight"],
            "mlp.gate_proj.weight": t["mlp.gate_proj.weight"][mlp][:, hid],
            "mlp.up_proj.weight": t["mlp.up_proj.weight"][mlp][:, hid],
            "mlp.down_proj.weight": t["mlp.down_proj.weight"][hid][:, mlp],
        }
        if cfg.attention_bias:
            p["self_attn.q_proj.bias"] = _rows(t["self_attn.q_proj.bias"], heads, d)
            p["self_attn.k_proj.bias"] = _rows(t["self_attn.k_proj.bias"], kv, d)
            p["self_attn.v_proj.bias"] = _rows(t["self_attn.v_proj.bias"], kv, d)
            p["self_attn.o_proj.bias"] = t["self_attn.o_proj.bias"][hid]
        out.update({dst + k: np.ascontiguousarray(v) for k, v in p.items()})
    new_cfg = dataclasses.replace(
        cfg, hidden_size=len(hid), num_hidden_layers=len(plan.layers), intermediate_size=len(plan.mlp[0]),
        num_attention_heads=len(plan.heads[0]), num_key_value_heads=len(_groups(plan.heads[0], group)))
    return new_cfg, out
