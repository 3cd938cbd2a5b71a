"""`prune_checkpoint` / `f2jax prune` end to end: a pruned checkpoint is an ordinary Qwen3 model."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from tiny_models import hf_hidden_states, random_batch
from transformers import AutoModel

import f2jax
from f2jax.errors import InputNotFoundError, UserInputError
from f2jax.prune.cli import add_prune_parser
from f2jax.prune.prune import REPORT_FILE, Calibration, prune_checkpoint
from f2jax.prune.weights import read_checkpoint

TEXTS = ["What is the capital of France?", "def add(a, b):\n    return a + b", "東京は日本の首都です。", "x"]
DIMS = {"hidden_size": 48, "num_hidden_layers": 2, "intermediate_size": 96}


@pytest.fixture(scope="module")
def calib(demo_tokenized):
    return Calibration(data=demo_tokenized, batches=2, batch_size=8, max_length=64)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, tiny_random, calib):
    out = tmp_path_factory.mktemp("pruned")
    scores = out.parent / "scores.npz"
    report = prune_checkpoint(tiny_random, out / "model", calibration=calib, dims=DIMS, scores_file=scores)
    return out / "model", scores, report


def test_pruned_checkpoint_loads_in_transformers_like_f2jax(pruned):
    out, _, report = pruned
    assert report["params"] == sum(v.size for v in read_checkpoint(out)[1].values())
    hf = AutoModel.from_pretrained(out).eval()
    assert type(hf).__name__ == "Qwen3Model" and hf.config.hidden_size == 48 and hf.config.num_hidden_layers == 2
    ids, mask = random_batch(np.random.default_rng(0), 4, 20)
    ours = f2jax.load(out).hidden_states(ids, mask)
    ref = hf_hidden_states(hf, ids, mask)
    real = mask.astype(bool)
    assert np.abs(ours - ref)[real].max() <= 1e-4 * np.abs(ref[real]).max()


def test_sentence_transformers_encodes_like_f2jax(pruned):
    out = pruned[0]
    st = SentenceTransformer(str(out), device="cpu")
    encoder = f2jax.load(out)
    for prompt_name in (None, "query"):
        ours = encoder.encode(TEXTS, prompt_name=prompt_name)
        theirs = st.encode(TEXTS, prompt_name=prompt_name)
        assert theirs.shape == (len(TEXTS), 48)
        cosine = (ours * theirs).sum(-1) / np.linalg.norm(theirs, axis=-1)
        assert cosine.min() >= 0.9999


def test_reused_scores_give_the_same_model_and_gradual_pruning_reaches_the_target(pruned, tiny_random, tmp_path,
                                                                                    calib):
    out, scores, _ = pruned
    report = prune_checkpoint(tiny_random, tmp_path / "again", dims=DIMS, scores_file=scores)  # no calibration
    assert report["scores_reused"]
    first, again = read_checkpoint(out)[1], read_checkpoint(tmp_path / "again")[1]
    assert all(np.array_equal(first[k], again[k]) for k in first)
    gradual = prune_checkpoint(tiny_random, tmp_path / "gradual", calibration=dataclasses.replace(calib, batches=1),
                               dims=DIMS, steps=2)
    assert [s["hidden_size"] for s in gradual["steps"]] == [56, 48]
    assert json.loads((tmp_path / "gradual" / REPORT_FILE).read_text())["params"] == gradual["params"]


def test_user_errors_name_the_flag_or_file(tiny_random, tmp_path, calib):
    with pytest.raises(InputNotFoundError, match="MODEL: .*nowhere does not exist"):
        prune_checkpoint(tmp_path / "nowhere", tmp_path / "out", calibration=calib, preset="80m")
    with pytest.raises(UserInputError, match="--hidden 4096 exceeds"):
        prune_checkpoint(tiny_random, tmp_path / "out", calibration=calib, dims={"hidden_size": 4096})
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(UserInputError, match="--scores .*bad.npz: not a prune scores file"):
        prune_checkpoint(tiny_random, tmp_path / "out", dims=DIMS, scores_file=bad)
    with pytest.raises(UserInputError, match="--calibration is required"):
        prune_checkpoint(tiny_random, tmp_path / "out", dims=DIMS)
    with pytest.raises(InputNotFoundError, match="--calibration: .*nothing does not exist"):
        prune_checkpoint(tiny_random, tmp_path / "out", dims=DIMS, calibration=Calibration(data=tmp_path / "nothing"))


def test_cli_parses_and_runs(tiny_random, tmp_path, pruned):
    parser = argparse.ArgumentParser()
    add_prune_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["prune", str(tiny_random), "--output", str(tmp_path / "cli"), "--scores",
                              str(pruned[1]), "--hidden", "48", "--layers", "2", "--intermediate", "96"])
    assert args.func(args) == 0
    assert read_checkpoint(tmp_path / "cli")[0].hidden_size == 48
