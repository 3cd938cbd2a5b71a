"""The demo's closing report (f2jax.demo_report) on a tiny trained run."""

from __future__ import annotations

import io
import json
import re

import jax
import numpy as np
import pytest

from f2jax import demo_report
from f2jax.config import config_from_dict, load_config
from f2jax.data import demo_data_dir
from f2jax.train.trainer import Trainer

from .conftest import TINY_MODEL


def test_report_compares_untrained_and_trained_on_held_out_rows(tmp_path, demo_tokenized):
    # data.raw stays "demo" (configs/demo.yaml): the report reads the held-out texts from it,
    # while training reads the pre-tokenised copy at data.path.
    overrides = [*TINY_MODEL, f"data.path={demo_tokenized}", "train.steps=2"]
    run_dir = tmp_path / "run"
    trainer = Trainer(load_config("configs/demo.yaml", overrides), run_dir)
    initial = jax.tree.map(np.asarray, trainer.state.params)
    trainer.train()
    trainer.close()

    cfg = load_config(run_dir / "config.yaml")
    # the rebuilt step-0 model is exactly the trainer's initial model
    rebuilt = demo_report.untrained_encoder(cfg)
    from flax import nnx

    rebuilt_params = nnx.to_pure_dict(nnx.state(rebuilt.model))
    for a, b in zip(jax.tree.leaves(initial), jax.tree.leaves(rebuilt_params), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))

    # held-out rows: the ones the pipeline held out (same count as the tokenised validation split)
    tasks = demo_report.held_out_corpus(cfg)
    assert set(tasks) == {"code_search_python", "cldr_bitext"}  # retrieval sources only
    code = tasks["code_search_python"]
    assert code.instruction and len(code.queries) == len(code.relevant) > 3
    assert all(code.docs[r] for r in code.relevant) and len(code.docs) > len(code.queries)
    head = demo_report.held_out_corpus(cfg, max_queries=8)["code_search_python"]
    assert head.queries == code.queries[:8] and len(head.docs) < len(code.docs)

    assert "(no validation records" in "\n".join(demo_report._validation_table(run_dir, None)[0])  # eval_every=0
    with (run_dir / "metrics.jsonl").open("a") as f:  # validation records as the trainer writes them
        for source, task in (("cldr_language_id", "classification"), ("cldr_bitext", "retrieval")):
            f.write(json.dumps({"step": 2, "split": "validation", "source": source, "task": task, "loss": 1.0,
                                "acc_hard": 0.6}) + "\n")

    out = io.StringIO()
    results = demo_report.report(run_dir, sources=["code_search_python", "cldr_bitext"], max_queries=8, out=out)
    text = out.getvalue()
    assert results["step"] == 2
    assert set(results["metrics"]) == {"code_search_python", "cldr_bitext"}
    # chance follows each source's task type: 1 negative for classification, 7 for retrieval
    assert results["chance"]["cldr_language_id"] == 0.5 and results["chance"]["cldr_bitext"] == 0.125
    assert re.search(r"cldr_language_id +1\.000 +0\.600 +0\.500", text)  # top-1 beside its chance
    assert re.search(r"cldr_bitext +1\.000 +0\.600 +0\.125", text)
    assert "retrieval 7, clustering 9, classification 1" in text
    assert text.count(demo_report.EXPECTED["cldr_bitext"]) == 2  # below both tables
    for m in results["metrics"].values():
        assert 0 <= m["untrained"]["ndcg_at_10"] <= 1 and 0 <= m["trained"]["mrr"] <= 1
        assert -2 <= m["trained"]["score_gap"] <= 2 and -1 <= m["trained"]["doc_cosine"] <= 1
    assert len(results["examples"]) == 3
    for i, ex in enumerate(results["examples"]):
        assert ex["query"] == code.queries[i] and ex["document"] == code.docs[code.relevant[i]]
        assert 1 <= ex["rank_untrained"] <= len(code.docs) and 1 <= ex["rank_trained"] <= len(code.docs)
        assert f"right document at rank {ex['rank_trained']}, score" in text
        assert (ex["gap_trained"] > 0) == (ex["rank_trained"] == 1)
    assert f"top 3 of {len(head.docs)} documents" in text
    assert "untrained (step 0) vs trained (step 2)" in text

    # a run on pre-tokenised data only (data.raw null) needs the raw texts passed in
    cfg_dict = cfg.to_dict()
    cfg_dict["data"]["raw"] = None
    with pytest.raises(ValueError, match="pass raw="):
        demo_report.held_out_corpus(config_from_dict(cfg_dict))
    assert demo_report.held_out_corpus(config_from_dict(cfg_dict), raw=demo_data_dir()).keys() == tasks.keys()


def test_score_gaps_and_bunching():
    scores = np.array([[0.9, 0.8, 0.1], [0.5, 0.7, 0.6]])
    np.testing.assert_allclose(demo_report.score_gaps(scores, [0, 2]), [0.1, -0.1])
    same = np.ones((4, 3)) / np.sqrt(3)
    assert demo_report.mean_pairwise_cosine(same) == pytest.approx(1.0)
    assert demo_report.mean_pairwise_cosine(np.eye(3)) == pytest.approx(0.0)
