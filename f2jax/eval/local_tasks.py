"""MTEB tasks defined from local files, evaluated offline by mteb's own evaluators.

Layout: ``--local DIR`` names either one task folder or a folder of task folders. A task
folder's type follows from the files it holds; all text files are UTF-8, TSV files are
tab-separated with a header row.

```
DIR/
  my_retrieval/             Retrieval (main score ndcg_at_10)
    queries.jsonl           {"id": "q1", "text": "..."} per line ("_id" accepted, as in BEIR)
    corpus.jsonl            {"id": "d1", "text": "...", "title": "..."} ("title" optional)
    qrels.tsv               query-id <TAB> corpus-id <TAB> score   (score > 0 = relevant)
  my_bitext/                BitextMining (main score f1)
    bitext.tsv              one column per language, header = ISO 639-3 code _ script
                            (eng_Latn, deu_Latn, ...); a row holds translations of one
                            another; every ordered pair of columns is one mteb subset
  my_sts/                   STS (main score cosine_spearman)
    sts.tsv                 sentence1 <TAB> sentence2 <TAB> score
  */task.json               optional: {"name", "description", "languages": ["eng-Latn"],
                            "instruction", "min_score", "max_score"}
```

The task name is the folder name unless task.json gives one; `instruction` becomes the
task's F2LLM instruction (keyed by task name in `MTEBModel(prompts=...)`). STS scores are
normalised with min_score/max_score (default: the data's own min and max). Each task has a
single "test" split. Rows are read verbatim; nothing is downloaded.
"""

from __future__ import annotations

import csv
import itertools
import json
from typing import Any

from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.abstasks.text.bitext_mining import AbsTaskBitextMining

from f2jax.errors import UserInputError
from f2jax.paths import Path, existing_dir
from f2jax.storage import local_copy

SPLIT = "test"
MARKERS = {"queries.jsonl": "Retrieval", "bitext.tsv": "BitextMining", "sts.tsv": "STS"}
MAIN_SCORE = {"Retrieval": "ndcg_at_10", "BitextMining": "f1", "STS": "cosine_spearman"}


def _read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", newline="") as f:  # a local file (staged if a URL)
        rows = [row for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if row]
    if not rows:
        raise UserInputError(f"{path}: empty file")
    width = len(rows[0])
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            raise UserInputError(f"{path}: line {i} has {len(row)} columns, header has {width}")
    return rows[0], rows[1:]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        record.setdefault("id", record.pop("_id", None))
        if not isinstance(record.get("id"), str) or not isinstance(record.get("text"), str):
            raise UserInputError(f"{path}: line {i} needs string fields 'id' and 'text'")
        records.append(record)
    return records


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query-id -> {corpus-id: score}; a first row whose score is not a number is a header."""
    with open(path, encoding="utf-8", newline="") as f:  # a local file (staged if a URL)
        rows = [row for row in csv.reader(f, delimiter="\t") if row]
    qrels: dict[str, dict[str, int]] = {}
    for i, row in enumerate(rows):
        if len(row) != 3:
            raise UserInputError(f"{path}: line {i + 1} needs query-id, corpus-id, score")
        try:
            score = int(float(row[2]))
        except ValueError:
            if i == 0:
                continue
            raise UserInputError(f"{path}: line {i + 1}: score {row[2]!r} is not a number") from None
        qrels.setdefault(row[0], {})[row[1]] = score
    return qrels


def _metadata(folder: Path, task_type: str, spec: dict[str, Any],
              eval_langs: list[str] | dict[str, list[str]]) -> TaskMetadata:
    name = spec.get("name", folder.name)
    return TaskMetadata(
        name=name, type=task_type, main_score=MAIN_SCORE[task_type],
        description=spec.get("description", f"Local {task_type} task read from {folder}."),
        dataset={"path": str(folder), "revision": "local"}, reference=None,
        category="t2t", modalities=["text"], eval_splits=[SPLIT], eval_langs=eval_langs,
        date=None, domains=[], task_subtypes=[], license="not specified",
        annotations_creators="human-annotated", dialect=[], sample_creation="found",
        bibtex_citation="",
    )


class LocalRetrievalTask(AbsTaskRetrieval):
    """queries.jsonl + corpus.jsonl + qrels.tsv through mteb's retrieval evaluator."""

    folder: Path
    instruction: str | None = None

    @staticmethod
    def eval_langs(folder: Path, spec: dict[str, Any]) -> list[str] | dict[str, list[str]]:
        return spec.get("languages", ["eng-Latn"])

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        from datasets import Dataset

        queries = _read_jsonl(self.folder / "queries.jsonl")
        corpus = _read_jsonl(self.folder / "corpus.jsonl")
        qrels = read_qrels(self.folder / "qrels.tsv")
        known_q, known_d = {q["id"] for q in queries}, {d["id"] for d in corpus}
        for qid, docs in qrels.items():
            missing = ({qid} - known_q) | (set(docs) - known_d)
            if missing:
                raise UserInputError(f"{self.folder}/qrels.tsv names unknown ids {sorted(missing)[:5]}")
        corpus_rows = [{"id": d["id"], "text": d["text"], "title": d.get("title", "")}
                       for d in corpus]
        split = RetrievalSplitData(
            queries=Dataset.from_list([{"id": q["id"], "text": q["text"]} for q in queries]),
            corpus=Dataset.from_list(corpus_rows), relevant_docs=qrels, top_ranked=None)
        self.dataset = {"default": {SPLIT: split}}
        self.data_loaded = True


class LocalBitextTask(AbsTaskBitextMining):
    """bitext.tsv (one column per language) through mteb's bitext-mining evaluator."""

    parallel_subsets = True
    folder: Path
    instruction: str | None = None

    @staticmethod
    def eval_langs(folder: Path, spec: dict[str, Any]) -> list[str] | dict[str, list[str]]:
        """Every ordered pair of language columns, as mteb's "parallel" subsets."""
        header, _ = _read_tsv(folder / "bitext.tsv")
        bad = [c for c in header if "-" in c or "_" not in c]
        if bad or len(header) < 2:
            raise UserInputError(
                f"{folder}/bitext.tsv: header needs >= 2 columns like eng_Latn, got {header}")
        return {f"{a}-{b}": [a.replace("_", "-"), b.replace("_", "-")]
                for a, b in itertools.permutations(header, 2)}

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        from datasets import Dataset, DatasetDict

        header, rows = _read_tsv(self.folder / "bitext.tsv")
        columns = {lang: [row[i] for row in rows] for i, lang in enumerate(header)}
        self.dataset = DatasetDict({SPLIT: Dataset.from_dict(columns)})
        self.data_loaded = True


def _sts_rows(folder: Path) -> list[list[str]]:
    header, rows = _read_tsv(folder / "sts.tsv")
    if header != ["sentence1", "sentence2", "score"]:
        raise UserInputError(f"{folder}/sts.tsv: header must be sentence1, sentence2, score")
    return rows


class LocalSTSTask(AbsTaskSTS):
    """sts.tsv (sentence1, sentence2, score) through mteb's STS evaluator."""

    folder: Path
    instruction: str | None = None

    @staticmethod
    def eval_langs(folder: Path, spec: dict[str, Any]) -> list[str] | dict[str, list[str]]:
        return spec.get("languages", ["eng-Latn"])

    @staticmethod
    def extra_attributes(folder: Path, spec: dict[str, Any]) -> dict[str, Any]:
        scores = [float(r[2]) for r in _sts_rows(folder)]
        return {"min_score": spec.get("min_score", min(scores)),
                "max_score": spec.get("max_score", max(scores))}

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        from datasets import Dataset, DatasetDict

        rows = _sts_rows(self.folder)
        data = {"sentence1": [r[0] for r in rows], "sentence2": [r[1] for r in rows],
                "score": [float(r[2]) for r in rows]}
        self.dataset = DatasetDict({SPLIT: Dataset.from_dict(data)})
        self.data_loaded = True


TASK_CLASSES = {"Retrieval": LocalRetrievalTask, "BitextMining": LocalBitextTask,
                "STS": LocalSTSTask}


def task_type(folder: Path) -> str | None:
    """The task type a folder's files announce, or None if it holds no task."""
    found = [kind for marker, kind in MARKERS.items() if (folder / marker).exists()]
    if len(found) > 1:
        raise UserInputError(f"{folder}: holds files of several task types {found}")
    return found[0] if found else None


def load_task(folder: Path) -> LocalRetrievalTask | LocalBitextTask | LocalSTSTask:
    kind = task_type(folder)
    if kind is None:
        raise UserInputError(f"{folder}: none of {sorted(MARKERS)} found")
    spec_path = folder / "task.json"
    spec = json.loads(spec_path.read_text(encoding="utf-8")) if spec_path.exists() else {}
    base = TASK_CLASSES[kind]
    # mteb reads `metadata` from the class (unload_data drops instance copies): a subclass per task
    attributes = {"metadata": _metadata(folder, kind, spec, base.eval_langs(folder, spec)),
                  "folder": folder, "instruction": spec.get("instruction")}
    if hasattr(base, "extra_attributes"):
        attributes.update(base.extra_attributes(folder, spec))
    return type(f"{base.__name__}_{folder.name}", (base,), attributes)()


def load_local_tasks(path: str | Path) -> list[Any]:
    """Tasks from one task folder, or from every task folder directly under `path` (sorted)."""
    path = local_copy(existing_dir(path, "--local"))
    if task_type(path):
        return [load_task(path)]
    folders = sorted(p for p in path.iterdir() if p.is_dir() and task_type(p))
    if not folders:
        raise UserInputError(f"{path}: no task folders (none holds {sorted(MARKERS)})")
    return [load_task(p) for p in folders]


def local_instructions(tasks: list[Any]) -> dict[str, str]:
    """task name -> instruction for tasks whose task.json sets one."""
    return {t.metadata.name: t.instruction for t in tasks if getattr(t, "instruction", None)}
