"""Hugging Face Qwen3 checkpoints as named NumPy tensors: read whole, write as a model directory.

Pruning is surgery on named tensors, so it works on the checkpoint's own layout ([out, in]
linears, one tensor per layer) rather than f2jax's stacked parameters: the surgery stays
independent of the model code, and its output is a plain transformers checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
from safetensors.numpy import save_file

from f2jax.errors import InputNotFoundError
from f2jax.hf.checkpoint import INDEX_FILE, SINGLE_FILE, SafetensorsCheckpoint
from f2jax.hf.export import publish_model_dir, write_encoder_files
from f2jax.hf.load import IGNORED_TENSORS, validate_checkpoint
from f2jax.model.config import Qwen3Config
from f2jax.paths import Path, as_path
from f2jax.tokenizer import bundled_tokenizer_dir, load_tokenizer

DEFAULT_MAX_LENGTH = 512
MAX_SHARD_BYTES = 2 * 1024**3


def read_checkpoint(path: str | Path, flag: str = "MODEL") -> tuple[Qwen3Config, dict[str, np.ndarray]]:
    """(config, HF name -> tensor in its stored dtype), the "model." prefix and LM head dropped."""
    path = as_path(path)
    if not path.is_dir():
        raise InputNotFoundError(f"{flag}: {path} is not a directory")
    cfg = Qwen3Config.from_pretrained(path)
    ckpt = SafetensorsCheckpoint(path)
    prefix = validate_checkpoint(ckpt, cfg)
    tensors = {name[len(prefix):]: ckpt.read(name) for name in ckpt.entries
               if name not in IGNORED_TENSORS and name.startswith(prefix)}
    return cfg, tensors


def storage_dtype(tensors: Mapping[str, np.ndarray]) -> str:
    """The checkpoint's dtype name (of its embedding), kept for the pruned output."""
    return str(tensors["embed_tokens.weight"].dtype)


def _sentence_settings(src: Path) -> tuple[int, dict[str, str]]:
    """(max_seq_length, prompts) of a sentence-transformers source directory, or defaults."""
    bert, st = src / "sentence_bert_config.json", src / "config_sentence_transformers.json"
    max_length = json.loads(bert.read_text()).get("max_seq_length") if bert.exists() else None
    prompts = json.loads(st.read_text()).get("prompts") if st.exists() else None
    if prompts is None:
        from f2jax.encode import F2LLM_QUERY_PROMPT

        prompts = {"query": F2LLM_QUERY_PROMPT, "document": ""}
    return int(max_length or DEFAULT_MAX_LENGTH), dict(prompts)


def _write_weights(out: Path, tensors: Mapping[str, np.ndarray]) -> None:
    """model.safetensors, or 2 GiB shards + index (transformers' layout)."""
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name in sorted(tensors):
        value = np.ascontiguousarray(tensors[name])
        if shards[-1] and size + value.nbytes > MAX_SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = value
        size += value.nbytes
    if len(shards) == 1:
        save_file(shards[0], str(out / SINGLE_FILE), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(v.nbytes for v in tensors.values())
    (out / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                             indent=2) + "\n")


def write_model_dir(out: str | Path, cfg: Qwen3Config, tensors: Mapping[str, np.ndarray], src: str | Path) -> Path:
    """config.json + safetensors + tokenizer + sentence-transformers modules, as
    `f2jax.hf.export.save_pretrained` writes them (tokenizer and prompts taken from `src`)."""
    out, src = as_path(out), as_path(src)
    max_length, prompts = _sentence_settings(src)
    has_tokenizer = (src / "tokenizer.json").exists() or (src / "tokenizer_config.json").exists()
    tokenizer = load_tokenizer(src if has_tokenizer else bundled_tokenizer_dir())
    with publish_model_dir(out) as local:
        _write_weights(local, tensors)
        config = {**cfg.to_hf_dict(), "dtype": storage_dtype(tensors)}
        (local / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        write_encoder_files(local, tokenizer, cfg.hidden_size, max_length, prompts)
    return out
