"""Named Qwen3 shapes and the Qwen3 tokenizer's fixed ids, in one place.

The Qwen3 checkpoints (0.6B–14B) and the F2LLM-v2 pruned students (80M/160M/330M) share the
151,936-row embedding and head_dim 128; the students keep 16 query / 8 KV heads and cut depth,
hidden size and MLP width. Benchmarks, tests and pruning presets all read these dicts
(`Qwen3Config` field names), never their own copies.
"""

from __future__ import annotations

from typing import Any

QWEN3_VOCAB_SIZE = 151_936  # embedding rows (the tokenizer itself has 151,669 tokens)
QWEN3_EOS_ID = 151_645  # <|im_end|>: every F2LLM text ends with it
QWEN3_BOS_ID = 151_643  # <|endoftext|>; ids from here up are special tokens
QWEN3_FIRST_SPECIAL_ID = QWEN3_BOS_ID


def _shape(hidden: int, layers: int, intermediate: int, heads: int, kv_heads: int) -> dict[str, Any]:
    return {"vocab_size": QWEN3_VOCAB_SIZE, "hidden_size": hidden, "num_hidden_layers": layers,
            "intermediate_size": intermediate, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "head_dim": 128}


SHAPES: dict[str, dict[str, Any]] = {
    "80m": _shape(320, 8, 2048, 16, 8),
    "160m": _shape(640, 9, 1536, 16, 8),
    "330m": _shape(896, 16, 2560, 16, 8),
    "0.6b": _shape(1024, 28, 3072, 16, 8),
    "1.7b": _shape(2048, 28, 6144, 16, 8),
    "4b": _shape(2560, 36, 9728, 32, 8),
    "8b": _shape(4096, 36, 12288, 32, 8),
    "14b": _shape(5120, 40, 17408, 40, 8),
}
QWEN3_06B = SHAPES["0.6b"]
