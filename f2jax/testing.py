"""Random Qwen3 checkpoints built locally with transformers (no downloads), for tests and
benchmarks.

Parity checks and the benchmarks against PyTorch / sentence-transformers need the reference
side to load the weights the way users' models load, so they are built and saved by
transformers itself. Needs torch (the `test` extra).
"""

from __future__ import annotations

from typing import Any

from f2jax.model.presets import QWEN3_EOS_ID, QWEN3_VOCAB_SIZE
from f2jax.paths import Path
from f2jax.tokenizer import load_tokenizer


def save_random_qwen3(out: str | Path, hf_config: dict[str, Any], *, seed: int = 0, with_tokenizer: bool = True,
                      dtype: Any = None, attn_implementation: str | None = None) -> tuple[Path, Any]:
    """Save a random transformers `Qwen3Model` built from `hf_config` (Qwen3Config kwargs, with
    `rope_theta` and optional `rope_scaling`); every norm scale and bias is randomised too, so
    parity checks exercise them. Returns (directory, the torch model in eval mode)."""
    import torch
    from transformers import Qwen3Config as HFQwen3Config
    from transformers import Qwen3Model as HFQwen3Model

    kwargs = dict(hf_config)
    rope = {"rope_type": "default", "rope_theta": kwargs.pop("rope_theta", 1_000_000.0)}
    rope.update(kwargs.pop("rope_scaling", None) or {})
    extra = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    cfg = HFQwen3Config(**kwargs, rope_parameters=rope, **extra)
    cfg.eos_token_id = QWEN3_EOS_ID
    torch.manual_seed(seed)
    model = HFQwen3Model(cfg).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.2 * torch.randn_like(param))
            elif name.endswith("bias"):
                param.copy_(0.1 * torch.randn_like(param))
    if dtype is not None:
        model = model.to(dtype)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    if with_tokenizer:
        load_tokenizer().save_pretrained(out)
    return out, model


def make_tiny_qwen3(
    out: str | Path,
    *,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int | None = None,
    seed: int = 0,
    with_tokenizer: bool = True,
) -> Path:
    """Save a random `Qwen3Model` (real Qwen3 vocab, norms randomised too) and Qwen3 tokenizer."""
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    hf_config = dict(
        vocab_size=QWEN3_VOCAB_SIZE, hidden_size=hidden, intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        head_dim=hidden // heads, max_position_embeddings=2048, rms_norm_eps=1e-6,
    )
    return save_random_qwen3(out, hf_config, seed=seed, with_tokenizer=with_tokenizer)[0]
