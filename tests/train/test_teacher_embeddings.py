"""Precomputed teacher embeddings: stored vectors, pipeline gathering, KD parity, config errors."""

from __future__ import annotations

import functools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import f2jax
from f2jax.config import ConfigError, load_config
from f2jax.data.pipeline import DataSpec, make_dataset, to_global
from f2jax.data.store import TokenizedStore
from f2jax.hf.load import load_model
from f2jax.jobs.teacher_embed import precompute_teacher_embeddings
from f2jax.model import ModelOptions, Qwen3Config, Qwen3Model
from f2jax.model.presets import QWEN3_VOCAB_SIZE
from f2jax.sharding import make_mesh
from f2jax.testing import make_tiny_qwen3
from f2jax.train.optim import make_optimizer, make_schedule
from f2jax.train.state import TrainState
from f2jax.train.step import LossSpec, train_step
from f2jax.train.trainer import Trainer

from .conftest import TINY_MODEL


@pytest.fixture(scope="module")
def teacher_data(demo_tokenized, tmp_path_factory):
    """(data dir with float32 teacher vectors under teacher/, tiny teacher dir)."""
    root = tmp_path_factory.mktemp("teacher_data")
    data = shutil.copytree(demo_tokenized, root / "data")
    teacher = make_tiny_qwen3(root / "teacher", hidden=64, layers=1, heads=4, kv_heads=2)
    precompute_teacher_embeddings(data, teacher, dtype="float32", batch_size=256)
    return data, teacher


def _batch(data, **kwargs):
    ds = make_dataset(data, DataSpec(global_batch_size=8, max_length=64, teacher_embeddings=True, **kwargs),
                      process_index=0, process_count=1)
    return ds[0]


def test_stored_vectors_equal_the_teacher_encoder(teacher_data):
    data, teacher = teacher_data
    meta = json.loads((data / "teacher" / "meta.json").read_text())
    assert meta["hidden_size"] == 64 and meta["storage"] == "float32"
    store = TokenizedStore(data)
    corpus = np.load(data / "teacher" / "corpus.npy")
    assert corpus.shape == (store.meta["num_docs"], 64) and corpus.dtype == np.float32
    encoder = f2jax.load(teacher, dtype="float32")
    docs = store.records("corpus", "corpus")
    for doc in (0, len(corpus) // 2, len(corpus) - 1):
        want = encoder.embed_ids([docs[doc]["input_ids"]])[0]
        np.testing.assert_allclose(corpus[doc], want, atol=1e-5, rtol=1e-5)
    for name, src in store.sources.items():
        q = np.load(data / "teacher" / f"{name}.query.npy")
        assert q.shape == (len(src.query_len), 64)
        rec = store.records("queries", name)[3]
        np.testing.assert_allclose(q[3], encoder.embed_ids([rec["query"]])[0], atol=1e-5, rtol=1e-5)
        instructed = data / "teacher" / f"{name}.query_instructed.npy"
        assert instructed.exists() == bool(src.instruction)
        if src.instruction:
            np.testing.assert_allclose(np.load(instructed)[3], encoder.embed_ids([rec["query_instructed"]])[0],
                                       atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("instructions", [False, True])
def test_batch_carries_the_stored_vectors_of_its_ids(teacher_data, instructions):
    data, _ = teacher_data
    store = TokenizedStore(data)
    corpus = np.load(data / "teacher" / "corpus.npy")
    batch = _batch(data, instructions=instructions)
    src, arrays = store.sources[batch.source], batch.arrays
    b, k = arrays.negative_ids.shape[:2]
    assert arrays.teacher_query.shape == (b, 64) and arrays.teacher_negative.shape == (b, k, 64)
    assert all(x.dtype == np.float32 for x in arrays.teacher)
    np.testing.assert_array_equal(arrays.teacher_passage, corpus[src.passage_id[batch.rows]])
    qkey = "query_instructed" if instructions and src.instruction else "query"
    stored_q = np.load(data / "teacher" / f"{batch.source}.{qkey}.npy")
    np.testing.assert_array_equal(arrays.teacher_query, stored_q[batch.rows])
    docs = store.records("corpus", "corpus")
    for i in range(b):  # each negative vector is the stored vector of the document the batch encodes
        for j in range(k):
            doc = int(np.argmin(np.abs(corpus - arrays.teacher_negative[i, j]).sum(-1)))
            np.testing.assert_array_equal(corpus[doc], arrays.teacher_negative[i, j])
            ids = np.asarray(docs[doc]["input_ids"])
            np.testing.assert_array_equal(arrays.negative_ids[i, j, : len(ids)], ids)
            assert arrays.negative_mask[i, j].sum() == len(ids)
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    assert isinstance(to_global(arrays, mesh).teacher_negative, jax.Array)


STUDENT = Qwen3Config(vocab_size=QWEN3_VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8)


def _one_step(batch, spec, teacher):
    graphdef, state = nnx.split(Qwen3Model(STUDENT, ModelOptions(), rngs=nnx.Rngs(0)))
    params = nnx.to_pure_dict(state)
    tx = make_optimizer(make_schedule("constant", peak_lr=1e-4, warmup_steps=0, total_steps=10))
    fn = jax.jit(functools.partial(train_step, graphdef=graphdef, tx=tx, spec=spec, inbatch=True))
    state = TrainState(params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32))
    return jax.device_get(fn(state, batch, teacher)[1])


def test_precomputed_kd_equals_cohosted_teacher(teacher_data):
    """GradCache (2 micro-batches) too: stored vectors must follow the student reps' row order."""
    data, teacher_dir = teacher_data
    stored = _batch(data, instructions=True).arrays
    plain = stored.without_teacher()
    assert len(jax.tree.leaves(stored)) == len(jax.tree.leaves(plain)) + 3
    t_graphdef, t_state = nnx.split(load_model(teacher_dir, ModelOptions()))
    spec = LossSpec(kd_weight=0.5, grad_accum=2)
    cohosted = _one_step(plain, spec, (t_graphdef, nnx.to_pure_dict(t_state)))
    precomputed = _one_step(stored, spec, None)
    assert cohosted["loss_kd"] > 0
    for key in ("loss_kd", "loss", "grad_norm"):
        np.testing.assert_allclose(precomputed[key], cohosted[key], rtol=1e-5)


def _trainer(tmp_path, overrides):
    return Trainer(load_config("configs/demo.yaml", overrides), tmp_path / "run")


def test_trainer_distils_from_stored_vectors(tmp_path, teacher_data):
    data, _ = teacher_data
    overrides = [*TINY_MODEL, f"data.path={data}", "data.raw=null", "teacher.embeddings=true",
                 "train.steps=1"]
    trainer = _trainer(tmp_path, overrides)
    assert trainer.run.program.teacher is None
    last = trainer.train()
    trainer.close()
    assert np.isfinite(last["loss_kd"]) and last["loss_kd"] > 0


@pytest.mark.parametrize("extra,match", [
    (["teacher.embeddings=true", "teacher.path=/does/not/exist"],
     r"teacher\.path and teacher\.embeddings are mutually exclusive"),
    (["teacher.embeddings=true"], r"teacher\.embeddings: .*teacher/meta\.json does not exist"),
])
def test_teacher_embeddings_config_errors(tmp_path, tiny_overrides, extra, match):
    with pytest.raises(ConfigError, match=match):
        _trainer(tmp_path, [*tiny_overrides, *extra])


def test_teacher_embeddings_narrower_than_student(tmp_path, teacher_data):
    data, _ = teacher_data
    wide = ("model.init={hidden_size: 128, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 4,"
            " num_key_value_heads: 2, head_dim: 32, max_position_embeddings: 256}")
    with pytest.raises(ConfigError, match=r"teacher\.embeddings: stored teacher hidden size 64 .* 128"):
        _trainer(tmp_path, [*TINY_MODEL, wide, f"data.path={data}", "data.raw=null", "teacher.embeddings=true"])
