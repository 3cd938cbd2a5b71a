"""Export round trips: f2jax -> save_pretrained -> transformers / sentence-transformers / f2jax."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from tiny_models import hf_hidden_states, random_batch
from transformers import AutoModel

import f2jax

TEXTS = [
    "What is the capital of France?",
    "Paris is the capital and largest city of France.",
    "def add(a, b):\n    return a + b",
    "Die Hauptstadt von Deutschland ist Berlin.",
    "東京は日本の首都です。",
    "x",
    "A longer passage " * 40,
]


@pytest.fixture(scope="module")
def exported(exported_tiny):
    return exported_tiny


def test_transformers_loads_export_with_identical_hidden_states(exported):
    encoder, out = exported
    hf = AutoModel.from_pretrained(out).eval()
    assert type(hf).__name__ == "Qwen3Model"
    ids, mask = random_batch(np.random.default_rng(0), 4, 20)
    ours = encoder.hidden_states(ids, mask)
    ref = hf_hidden_states(hf, ids, mask)
    real = mask.astype(bool)
    assert np.abs(ours - ref)[real].max() <= 1e-4 * np.abs(ref[real]).max()


def test_sentence_transformers_encode_equals_encoder(exported):
    encoder, out = exported
    st = SentenceTransformer(str(out), device="cpu")
    assert st.max_seq_length == 128
    for prompt_name in (None, "query"):
        ours = encoder.encode(TEXTS, prompt_name=prompt_name)
        theirs = st.encode(TEXTS, prompt_name=prompt_name)
        cosine = (ours * theirs).sum(-1) / np.linalg.norm(theirs, axis=-1)
        assert cosine.min() >= 0.9999


def test_sentence_transformers_tokenizes_like_f2jax(exported):
    encoder, out = exported
    st = SentenceTransformer(str(out), device="cpu")
    features = st.preprocess([TEXTS[0], TEXTS[-1]])
    eos = encoder.tokenizer.eos_token_id
    ours = encoder.tokenizer([TEXTS[0], TEXTS[-1]], truncation=True, max_length=128)["input_ids"]
    for row, mask, expected in zip(features["input_ids"], features["attention_mask"], ours, strict=True):
        real = row[mask.bool()].tolist()
        assert real == expected and real[-1] == eos


def test_sentence_transformers_files(exported):
    _, out = exported
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_lasttoken"] is True and pooling["include_prompt"] is True
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    prompts = json.loads((out / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts["query"].startswith("Instruct: ") and prompts["document"] == ""


def test_sharded_export_reloads(exported, tmp_path):
    encoder, _ = exported
    out = encoder.save_pretrained(tmp_path / "sharded", max_shard_bytes=8 * 1024**2)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and all((out / f).exists() for f in files)
    reloaded = f2jax.load(out)
    np.testing.assert_array_equal(reloaded.encode(TEXTS), encoder.encode(TEXTS))
    hf = AutoModel.from_pretrained(out)
    np.testing.assert_array_equal(
        hf.embed_tokens.weight.detach().numpy(),
        np.asarray(encoder.model.embed_tokens.embedding[...]))


def test_bfloat16_export(exported, tmp_path):
    encoder, _ = exported
    out = encoder.save_pretrained(tmp_path / "bf16", dtype="bfloat16")
    hf = AutoModel.from_pretrained(out)
    assert hf.embed_tokens.weight.dtype == torch.bfloat16
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
