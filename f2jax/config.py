"""Typed run configuration: YAML file + `key=value` overrides -> validated dataclasses.

Unknown keys and ill-typed values fail with the dotted key that caused them (and the closest
known key, for a likely typo), before anything is loaded or compiled. Every key is declared with
`key(default, meaning)`: `f2jax config show` prints the meanings from there, so they cannot drift.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal

import yaml

from f2jax.errors import F2JaxError
from f2jax.model.options import DType, ModelOptions
from f2jax.paths import Path, absolute, as_path


class ConfigError(F2JaxError, ValueError):
    """A configuration that cannot work; the message names the offending key."""

    kind = "configuration error"


def key(default: Any, meaning: str) -> Any:
    """A config key with its one-line meaning, kept beside the field so `f2jax config show`
    prints what the code declares (`f2jax.config_cli`)."""
    return dataclasses.field(default=default, metadata={"help": meaning})


def _options(self: Any) -> ModelOptions:
    """The section's runtime fields as `ModelOptions` (which checks them)."""
    return ModelOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ModelOptions)})


# How a model runs (shared by the student `model` and a co-hosted `teacher`): the fields of
# `ModelOptions`, defaults and meanings included, as a mutable config section.
ModelRuntime = dataclasses.make_dataclass(
    "ModelRuntime",
    [(f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata))
     for f in dataclasses.fields(ModelOptions)],
    namespace={"__module__": __name__, "options": _options},
)


@dataclasses.dataclass
class ModelSection(ModelRuntime):
    path: str | None = key(None, "Hugging Face Qwen3 directory to start from")
    init: dict[str, Any] | None = key(None, "or a config.json-style dict: a fresh random model")
    init_seed: int = key(0, "seed of the fresh random model (model.init)")
    tokenizer: str | None = key(None, "tokenizer directory; default: the model directory, else the bundled "
                                      "Qwen3 tokenizer")


@dataclasses.dataclass
class TeacherSection(ModelRuntime):
    path: str | None = key(None, "a frozen Qwen3 teacher for distillation (same tokenizer)")
    embeddings: bool = key(False, "or its vectors precomputed into data.path/teacher "
                                  "(`f2jax data teacher-embed`)")
    param_dtype: DType = key("bfloat16", "dtype of the frozen weights (no optimiser: half size is enough)")
    dtype: DType = key("bfloat16", "compute dtype")
    weight: float = key(1.0, "weight of the distillation loss (kd_weight)")


@dataclasses.dataclass
class DataSection:
    path: str | None = key(None, "tokenised data directory (`f2jax data tokenize` output)")
    raw: str | None = key(None, "raw parquet sources, tokenised into data.path (or RUN_DIR/data) if absent; "
                                "'demo': the bundled demo data")
    global_batch_size: int = key(16, "queries per optimiser step, over all devices and processes")
    max_length: int = key(1024, "tokens per text (longer texts are truncated, EOS kept)")
    buckets: list[int] | None = key(None, "padded lengths texts are bucketed into (default: powers of two up "
                                          "to max_length)")
    negatives: dict[str, int] | None = key(None, "hard negatives per query by task type (default: retrieval 7, "
                                                 "clustering 9, classification 1)")
    instructions: bool = key(False, "prefix queries with their source's instruction")
    holdout: float = key(0.01, "fraction of each source's rows held out for validation")
    max_rows_per_source: int | None = key(80_000, "rows kept per source for training (null: all)")
    num_threads: int = key(2, "Grain reader threads")
    packing: bool = key(False, "pack each step's texts into rows of pack_length (segment-aware attention)")
    pack_length: int | None = key(None, "packed row length T; default data.max_length")


@dataclasses.dataclass
class TrainSection:
    seed: int = key(0, "seed of the data order and hard-negative sampling")
    steps: int | None = key(None, "optimiser steps (default: epochs × steps per epoch)")
    epochs: int = key(1, "passes over the training rows (when train.steps is unset)")
    lr: float = key(1e-5, "peak learning rate (AdamW)")
    min_lr: float = key(1e-7, "learning rate at the end of the cosine schedule")
    warmup_steps: int = key(0, "linear warm-up steps (cut to the run's length)")
    schedule: Literal["cosine", "constant"] = key("cosine", "learning-rate schedule after warm-up")
    weight_decay: float = key(0.01, "AdamW weight decay")
    b1: float = key(0.9, "AdamW beta1")
    b2: float = key(0.98, "AdamW beta2")
    clip_norm: float = key(1.0, "clip gradients to this global norm")
    grad_accum: int = key(1, "GradCache micro-batches per step (exact big-batch loss in less memory)")
    temperature: float = key(0.05, "contrastive softmax temperature")
    mrl: bool = key(True, "Matryoshka loss over several embedding widths")
    mrl_dims: list[int] | None = key(None, "Matryoshka widths (default: the recipe's, up to hidden_size)")
    inbatch_passage_gradient: bool = key(True, "in-batch loss: gradient through passages too (false: the "
                                               "reference's multi-GPU behaviour, queries only)")
    log_every: int = key(10, "steps between metrics.jsonl / TensorBoard records")
    eval_every: int = key(0, "steps between validation passes (0: none)")
    eval_batches: int = key(8, "validation batches per source and pass")


@dataclasses.dataclass
class MeshSection:
    data: int = key(-1, "data-parallel axis size (-1: the devices left over)")
    fsdp: int = key(1, "fully sharded data-parallel axis size (parameters and batch)")
    tensor: int = key(1, "tensor-parallel axis size")


@dataclasses.dataclass
class CheckpointSection:
    every: int = key(0, "steps between checkpoints; 0 = only at epoch ends and on preemption")
    keep: int = key(3, "newest checkpoints kept")
    keep_every: int | None = key(None, "also keep every N-th step for good")
    async_save: bool = key(True, "save in the background while training continues")
    allow_config_change: bool = key(False, "resume a run dir whose checkpoints were made with another config")
    compile_cache: str | None = key("run_dir", "persistent XLA compilation cache, so a restart compiles nothing it "
                                               "compiled before: run_dir (RUN_DIR/compile_cache), a directory or "
                                               "gs:// URL, or null (off)")


@dataclasses.dataclass
class RunConfig:
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    teacher: TeacherSection = dataclasses.field(default_factory=TeacherSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    mesh: MeshSection = dataclasses.field(default_factory=MeshSection)
    checkpoint: CheckpointSection = dataclasses.field(default_factory=CheckpointSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self, *, data_parallel: int | None = None, processes: int | None = None,
                 hidden_size: int | None = None) -> None:
        """Every rule that ties keys together, with the offending keys named (ConfigError).

        The facts a run learns later are optional: `data_parallel` (mesh.data × mesh.fsdp once
        the mesh is built) and `processes`, and the model's `hidden_size`; the rules that need
        one are checked when it is given. Paths are checked for existence elsewhere
        (`f2jax.train.setup.check_static`)."""
        t, d = self.train, self.data
        for name in ("lr", "temperature"):
            if getattr(t, name) <= 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(t, name)}")
        if t.steps is not None and t.steps < 1:
            raise ConfigError(f"train.steps must be >= 1, got {t.steps}")
        if t.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1, got {t.epochs}")
        if t.grad_accum < 1:
            raise ConfigError(f"train.grad_accum must be >= 1, got {t.grad_accum}")
        if d.global_batch_size < 1:
            raise ConfigError(f"data.global_batch_size must be >= 1, got {d.global_batch_size}")
        if d.path is None and d.raw is None:
            raise ConfigError("data: set data.path (tokenised data) or data.raw (parquet sources)")
        if d.pack_length is not None and d.pack_length < d.max_length:
            raise ConfigError(f"data.pack_length ({d.pack_length}) must be >= data.max_length ({d.max_length}): "
                              "every text must fit one packed row")
        # Which attention kernel takes packed rows is decided per backend in one place:
        # f2jax.model.attention.choose_kernel.
        if (self.model.path is None) == (self.model.init is None):
            raise ConfigError("model: set exactly one of model.path (a checkpoint) or model.init (a fresh model)")
        if self.teacher.path is not None and self.teacher.embeddings:
            raise ConfigError("teacher.path and teacher.embeddings are mutually exclusive: co-host the teacher "
                              "(teacher.path) or read its precomputed vectors (teacher.embeddings=true)")
        for name in ("model", "teacher"):
            try:
                getattr(self, name).options()
            except ValueError as err:
                raise ConfigError(f"{name}: {err}") from None
        if data_parallel is not None and d.global_batch_size % (data_parallel * t.grad_accum):
            raise ConfigError(
                f"data.global_batch_size {d.global_batch_size} must be divisible by the data-parallel size "
                f"(mesh.data × mesh.fsdp = {data_parallel}) × train.grad_accum ({t.grad_accum})")
        if processes is not None and d.global_batch_size % processes:
            raise ConfigError(f"data.global_batch_size {d.global_batch_size} not divisible by {processes} processes")
        if hidden_size is not None and t.mrl and t.mrl_dims:
            outside = [dim for dim in t.mrl_dims if dim > hidden_size or dim < 1]
            if outside:
                raise ConfigError(f"train.mrl_dims: {outside} outside [1, hidden size {hidden_size}]")


def _check_type(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if hint is Any:
        return value
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, item = typing.get_args(hint)
        return {k: _check_type(v, item, f"{key}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)  # YAML 1.1 reads "5e-3" (no dot) as a string
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def _with_suggestion(key: str, name: Any, names: set[str], prefix: str) -> str:
    """`key (did you mean <prefix><closest>?)` when a known key is a likely typo of `name`."""
    close = difflib.get_close_matches(str(name), sorted(names), n=1, cutoff=0.6)
    return f"{key} (did you mean {prefix}{close[0]}?)" if close else key


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        keys = ", ".join(_with_suggestion(f"{prefix}{k}", k, names, prefix) for k in unknown)
        raise ConfigError(f"unknown config key(s): {keys} (known under {prefix or 'top level'}: {sorted(names)})")
    kwargs = {}
    for name, value in data.items():
        hint, key = hints[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, f"{key}.")
        else:
            kwargs[name] = _check_type(value, hint, key)
    return cls(**kwargs)


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """`a.b.c=value` with a YAML-parsed value, in place."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config; `include: other.yaml` (relative to the file) is read first, then overridden."""
    file = absolute(path)  # a URL or a local file
    if not file.exists():
        raise ConfigError(f"config file {file} not found")
    if file in _seen:
        raise ConfigError(f"{file}: include cycle")
    tree = yaml.safe_load(file.read_text()) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{file}: the top level must be a mapping")
    include = tree.pop("include", None)
    if include is not None:
        tree = _merge(read_yaml(file.parent / include, (*_seen, file)), tree)
    return tree


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    tree: dict[str, Any] = read_yaml(path) if path is not None else {}
    for assignment in overrides or []:
        apply_override(tree, assignment)
    return _build(RunConfig, tree, "")


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    as_path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def config_from_dict(tree: dict[str, Any]) -> RunConfig:
    """A `RunConfig` from `RunConfig.to_dict()` output (e.g. the copy stored in a checkpoint)."""
    return _build(RunConfig, tree, "")
