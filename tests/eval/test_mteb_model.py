"""MTEBModel through mteb's evaluators vs sentence-transformers on the exported model."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES
from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
from sentence_transformers import SentenceTransformer

from f2jax.encode import normalize_rows
from f2jax.eval.local_tasks import load_local_tasks
from f2jax.eval.model import MTEBModel
from f2jax.eval.prompts import format_prompt, sentence_transformers_prompts
from f2jax.eval.runner import evaluate

STS = "Instruct: Retrieve semantically similar text.\nQuery: "
BITEXT = "Instruct: Retrieve translations of the following text.\nQuery: "
RETRIEVAL = ("Instruct: Given a question, retrieve passages that can help answer the question."
             "\nQuery: ")


def _scores(result) -> dict[tuple[str, str], dict[str, float]]:
    """(task, subset) -> every numeric score mteb reported."""
    out = {}
    for task in result.task_results:
        for row in task.scores["test"]:
            out[task.task_name, row["hf_subset"]] = {
                k: float(v) for k, v in row.items() if isinstance(v, (int, float))}
    return out


@pytest.fixture(scope="module")
def ours(tiny):
    encoder, _ = tiny
    return _scores(evaluate(MTEBModel(encoder), load_local_tasks(EXAMPLES)))


def test_same_scores_as_sentence_transformers(tiny, ours):
    _, out = tiny
    st = SentenceTransformer(str(out), device="cpu")
    wrapper = SentenceTransformerEncoderWrapper(st, model_prompts=sentence_transformers_prompts())
    theirs = _scores(evaluate(wrapper, load_local_tasks(EXAMPLES)))
    assert set(ours) == set(theirs)
    assert {task for task, _ in ours} == {
        "F2jaxExampleScienceQA", "F2jaxExampleBitext", "F2jaxExampleSTS"}
    for key, scores in ours.items():
        assert scores.keys() == theirs[key].keys()
        assert len(scores) > 3
        for metric, value in scores.items():
            assert value == pytest.approx(theirs[key][metric], abs=1e-4, nan_ok=True), (key, metric)


def test_symmetric_prompts_matter(tiny, ours):
    """With only the exported query/document prompts, ST leaves STS bare: scores differ."""
    _, out = tiny
    st = SentenceTransformer(str(out), device="cpu")
    bare = _scores(evaluate(SentenceTransformerEncoderWrapper(st),
                            load_local_tasks(EXAMPLES / "everyday_sts")))
    key = ("F2jaxExampleSTS", "default")
    assert abs(bare[key]["cosine_spearman"] - ours[key]["cosine_spearman"]) > 1e-3


class Recorder:
    """Stands in for the Encoder; records (prompt, texts) of every encode call."""

    def __init__(self, encoder):
        self.encoder, self.calls = encoder, []
        self.config, self.max_length, self.model = encoder.config, encoder.max_length, encoder.model

    def encode(self, texts, *, prompt=None, **kwargs):
        self.calls.append((prompt, list(texts)))
        return self.encoder.encode(texts, prompt=prompt, **kwargs)


def _calls(encoder, folder, **kwargs):
    recorder = Recorder(encoder)
    evaluate(MTEBModel(recorder, **kwargs), load_local_tasks(EXAMPLES / folder))
    return recorder.calls


def test_retrieval_prompt_on_queries_only(tiny):
    calls = _calls(tiny[0], "science_qa")
    prompts = {prompt for prompt, _ in calls}
    assert prompts == {RETRIEVAL, None}
    queries = [t for p, texts in calls if p == RETRIEVAL for t in texts]
    docs = [t for p, texts in calls if p is None for t in texts]
    assert "Why is the sky blue?" in queries and len(queries) == 24
    assert len(docs) == 32 and all(not d.startswith("Instruct") for d in docs)
    assert not set(queries) & set(docs)


def test_symmetric_tasks_prompt_both_sides(tiny):
    sts = _calls(tiny[0], "everyday_sts")
    assert [p for p, _ in sts] == [STS, STS]
    assert "A man is playing a guitar." in sts[0][1] and "A man plays the guitar." in sts[1][1]
    bitext = _calls(tiny[0], "eng_deu_fra_bitext")
    assert bitext and {p for p, _ in bitext} == {BITEXT}


def test_user_instructions_override(tiny):
    by_name = _calls(tiny[0], "everyday_sts", prompts={"F2jaxExampleSTS": "Compare.",
                                                      "STS": "ignored"})
    assert {p for p, _ in by_name} == {format_prompt("Compare.")}
    by_type = _calls(tiny[0], "science_qa", prompts={"Retrieval": "Find it."})
    assert {p for p, _ in by_type} == {format_prompt("Find it."), None}
    off = _calls(tiny[0], "everyday_sts", prompts={"STS": ""})
    assert {p for p, _ in off} == {None}


def test_dim_truncates_then_normalises(tiny, ours):
    encoder, _ = tiny
    hidden = encoder.config.hidden_size
    full = _scores(evaluate(MTEBModel(encoder, dim=hidden), load_local_tasks(EXAMPLES)))
    assert full == ours
    small = MTEBModel(encoder, dim=8)
    assert small.mteb_model_meta.embed_dim == 8
    assert small.mteb_model_meta.experiment_kwargs == {"dim": 8}
    cut = _scores(evaluate(small, load_local_tasks(EXAMPLES)))
    assert cut.keys() == ours.keys()
    changed = [k for k in ours if abs(cut[k]["main_score"] - ours[k]["main_score"]) > 1e-6]
    assert len(changed) >= 5
    texts = ["Why is the sky blue?", "Der Zug fährt um acht Uhr ab."]
    ids = [encoder.tokenizer(RETRIEVAL + t)["input_ids"] for t in texts]
    raw = encoder.embed_ids(ids)
    task = load_local_tasks(EXAMPLES / "science_qa")[0]
    got = small.encode([{"text": texts}], task_metadata=task.metadata, hf_split="test",
                       hf_subset="default", prompt_type=None)
    np.testing.assert_allclose(got, normalize_rows(raw[:, :8]), atol=1e-6)


def test_model_meta_and_similarity(tiny):
    encoder, _ = tiny
    model = MTEBModel(encoder, name="tiny")
    meta = model.mteb_model_meta
    assert meta.name == "f2jax/tiny" and meta.embed_dim == encoder.config.hidden_size
    assert meta.max_tokens == 128 and meta.similarity_fn_name.value == "cosine"
    assert "JAX" in meta.framework and meta.n_parameters > 151936 * 64
    a, b = np.eye(3, dtype=np.float32), np.array([[1, 1, 0]] * 3, np.float32)
    np.testing.assert_allclose(np.asarray(model.similarity(a, b)), np.full((3, 3), 0.5 ** 0.5)
                               * np.array([[1], [1], [0]]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.similarity_pairwise(a, b)),
                               [0.5 ** 0.5, 0.5 ** 0.5, 0], atol=1e-6)
    with pytest.raises(ValueError, match="dim"):
        MTEBModel(encoder, dim=65)
