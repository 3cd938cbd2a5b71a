"""The tokenised form as a TensorFlow-Datasets dataset in ArrayRecord files (no TensorFlow).

Two builder configs in one dataset `f2jax_tokenized`: `queries` (one split per source: query
ids, the query ids with its instruction prefix, the passage's doc id, the negatives' doc ids)
and `corpus` (split `corpus`: deduplicated documents, record index == doc id). TFDS users read
them with `tfds.data_source("f2jax_tokenized/queries", data_dir=OUT, split=SOURCE)` (after
importing this module) or `tfds.builder_from_directory(...)`; Grain reads them by random access.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import example_serializer

from f2jax.paths import Path

NAME = "f2jax_tokenized"
VERSION = "1.0.0"
_IDS = dict(shape=(None,), encoding=tfds.features.Encoding.BYTES)


def _features(config: str) -> tfds.features.FeaturesDict:
    if config == "queries":
        return tfds.features.FeaturesDict({
            "row": np.int64,  # row of the raw parquet file, for tracing errors back
            "query": tfds.features.Tensor(dtype=np.int32, **_IDS),
            "query_instructed": tfds.features.Tensor(dtype=np.int32, **_IDS),
            "passage_id": np.int64,
            "negative_ids": tfds.features.Tensor(dtype=np.int64, **_IDS),  # -1: no negative
        })
    return tfds.features.FeaturesDict({
        "doc_id": np.int64,
        "input_ids": tfds.features.Tensor(dtype=np.int32, **_IDS),
    })


class F2jaxTokenized(tfds.core.GeneratorBasedBuilder):
    """Writes examples handed over in memory; `disable_shuffling` keeps record order = row order."""

    VERSION = tfds.core.Version(VERSION)
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="queries"),
        tfds.core.BuilderConfig(name="corpus"),
    ]

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS's default lookup needs the `importlib_resources` backport; the file is known.
        return epath.Path(__file__)

    def __init__(self, *, splits: dict[str, list[dict]] | None = None, **kwargs):
        self._splits = splits or {}
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="F2LLM-format sources tokenised by f2jax (EOS appended after truncation).",
            features=_features(self.builder_config.name),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {name: self._generate_examples(rows) for name, rows in self._splits.items()}

    def _generate_examples(self, rows: list[dict]) -> Iterator[tuple[int, dict]]:
        yield from enumerate(rows)

    # TFDS prints "Downloading and preparing dataset ..." / "... downloaded and prepared" around every
    # build; nothing is downloaded here and `f2jax.data.tokenize` logs its own line (f2jax/logs.py).
    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass


@contextlib.contextmanager
def _no_progress_bars():
    """TFDS's per-split "Generating ... examples" bars, off while f2jax writes (restored after)."""
    from tensorflow_datasets.core.utils import tqdm_utils

    was_on = getattr(tqdm_utils, "_active", True)
    tfds.disable_progress_bar()
    try:
        yield
    finally:
        tfds.display_progress_bar(was_on)


@contextlib.contextmanager
def _deterministic_protos():
    """tf.train.Example holds a proto map whose serialisation order is not stable across runs;
    deterministic serialisation makes re-runs byte-identical."""
    cls = example_serializer.ExampleSerializer
    original = cls.serialize_example
    cls.serialize_example = lambda self, example: self.get_tf_example(example).SerializeToString(
        deterministic=True
    )
    try:
        yield
    finally:
        cls.serialize_example = original


def write(out_dir: Path, config: str, splits: dict[str, list[dict]]) -> Path:
    """Build one config into `out_dir` (replacing an existing one); returns its directory."""
    shutil.rmtree(version_dir(out_dir, config), ignore_errors=True)  # TFDS would reuse it
    builder = F2jaxTokenized(
        splits=splits, data_dir=str(out_dir), config=config, file_format="array_record"
    )
    with _deterministic_protos(), _no_progress_bars():
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(num_shards=1)
        )
    return Path(builder.data_dir)


def version_dir(out_dir: str | Path, config: str) -> Path:
    return Path(out_dir) / NAME / config / VERSION


def data_source(out_dir: str | Path, config: str, split: str):
    """Random-access source of decoded records (a TFDS ArrayRecordDataSource)."""
    builder = tfds.builder_from_directory(str(version_dir(out_dir, config)))
    return builder.as_data_source(split=split)
