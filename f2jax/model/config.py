"""Qwen3 architecture config, read from (and written back to) a checkpoint's config.json."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from f2jax.errors import F2JaxError, InputNotFoundError
from f2jax.paths import Path, as_path

SUPPORTED_MODEL_TYPES = ("qwen3",)
SUPPORTED_ARCHITECTURES = ("Qwen3Model", "Qwen3ForCausalLM")


class UnsupportedModelError(F2JaxError, ValueError):
    """The checkpoint is not a Qwen3 model f2jax can run."""

    kind = "unsupported model"


@dataclasses.dataclass(frozen=True)
class Qwen3Config:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    rope_scaling: dict[str, Any] | None = None
    max_position_embeddings: int = 40960
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    bos_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise UnsupportedModelError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            raise UnsupportedModelError(f"head_dim must be even for RoPE, got {self.head_dim}")

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def num_params(self, include_embedding: bool = True) -> int:
        h, m = self.hidden_size, self.intermediate_size
        attn = h * (self.q_dim + 2 * self.kv_dim) + self.q_dim * h + 2 * self.head_dim
        if self.attention_bias:
            attn += self.q_dim + 2 * self.kv_dim + h
        per_layer = attn + 3 * h * m + 2 * h
        total = self.num_hidden_layers * per_layer + h
        return total + (self.vocab_size * h if include_embedding else 0)

    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any], source: str = "config.json") -> Qwen3Config:
        """Build from a transformers config dict (v4 `rope_theta/rope_scaling` or v5 `rope_parameters`)."""
        model_type = raw.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModelError(
                f"{source}: model_type {model_type!r} is not supported (f2jax runs {SUPPORTED_MODEL_TYPES})"
            )
        archs = raw.get("architectures") or ["Qwen3Model"]
        unknown = [a for a in archs if a not in SUPPORTED_ARCHITECTURES]
        if unknown:
            raise UnsupportedModelError(
                f"{source}: architectures {unknown} not supported (expected one of {SUPPORTED_ARCHITECTURES})"
            )
        if raw.get("use_sliding_window"):
            raise UnsupportedModelError(f"{source}: use_sliding_window=true is not supported")
        if raw.get("hidden_act", "silu") != "silu":
            raise UnsupportedModelError(f"{source}: hidden_act {raw['hidden_act']!r} is not supported")
        rope = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
        theta = rope.pop("rope_theta", raw.get("rope_theta", 1_000_000.0))
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        scaling = None if rope_type == "default" else {**rope, "rope_type": rope_type}
        try:
            return cls(
                vocab_size=int(raw["vocab_size"]),
                hidden_size=int(raw["hidden_size"]),
                intermediate_size=int(raw["intermediate_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=int(raw["num_attention_heads"]),
                num_key_value_heads=int(raw.get("num_key_value_heads") or raw["num_attention_heads"]),
                head_dim=int(raw.get("head_dim") or raw["hidden_size"] // raw["num_attention_heads"]),
                rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
                rope_theta=float(theta),
                rope_scaling=scaling,
                max_position_embeddings=int(raw.get("max_position_embeddings", 40960)),
                tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
                attention_bias=bool(raw.get("attention_bias", False)),
                eos_token_id=_first_int(raw.get("eos_token_id")),
                pad_token_id=_first_int(raw.get("pad_token_id")),
                bos_token_id=_first_int(raw.get("bos_token_id")),
            )
        except KeyError as err:
            raise UnsupportedModelError(f"{source}: missing required key {err.args[0]!r}") from None

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Qwen3Config:
        file = as_path(path) / "config.json"
        if not file.exists():
            raise InputNotFoundError(f"{file} not found: not a Hugging Face model directory")
        return cls.from_hf_dict(json.loads(file.read_text()), source=str(file))

    def to_hf_dict(self) -> dict[str, Any]:
        """A config.json that transformers loads as `Qwen3Model`."""
        rope = {"rope_type": "default", **(self.rope_scaling or {}), "rope_theta": self.rope_theta}
        return {
            "architectures": ["Qwen3Model"],
            "model_type": "qwen3",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": rope,
            "rope_scaling": None if self.rope_scaling is None else rope,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "attention_dropout": 0.0,
            "use_sliding_window": False,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "bos_token_id": self.bos_token_id,
        }


def _first_int(value: Any) -> int | None:
    if isinstance(value, list):
        return int(value[0]) if value else None
    return None if value is None else int(value)
