"""`MTEBModel`: an f2jax `Encoder` behind mteb's `EncoderProtocol`.

mteb (>= 2) hands `encode` a torch DataLoader of batches (`batch["text"]`); we gather all texts
and let the Encoder sort them by length and pad to its buckets, which keeps jit compilations
bounded. Prompts follow `f2jax.eval.prompts` (documents bare, queries and both sides of symmetric
tasks with ``Instruct: ...\\nQuery: ``). `dim` keeps the first `dim` components of the raw
last-token state and then L2-normalises (Matryoshka truncation), as training does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from f2jax.eval.prompts import resolve_prompt

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.models.model_meta import ModelMeta

    from f2jax.encode import Encoder

DEFAULT_NAME = "f2jax/model"


def _texts(inputs: Iterable[Any]) -> list[str]:
    """Flatten mteb's DataLoader (dict batches with 'text') or a plain list of strings."""
    texts: list[str] = []
    for item in inputs:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, Mapping):
            texts.extend(item["text"])
        else:
            raise TypeError(f"unsupported mteb input batch of type {type(item).__name__}")
    return texts


def _n_parameters(encoder: Encoder) -> int:
    import jax
    from flax import nnx

    state = nnx.state(encoder.model, nnx.Param)
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(state)))


def model_meta(encoder: Encoder, *, name: str, revision: str | None, dim: int | None,
               use_instructions: bool = True) -> ModelMeta:
    """A complete ModelMeta: mteb replaces encoders lacking one with an empty model."""
    from mteb.models.model_meta import ModelMeta, ScoringFunction

    if "/" not in name:
        name = f"f2jax/{name}"
    config = encoder.config
    return ModelMeta(
        loader=None,
        name=name,
        revision=revision or "no_revision_available",
        release_date=None,
        languages=None,
        n_parameters=_n_parameters(encoder),
        n_embedding_parameters=int(config.vocab_size * config.hidden_size),
        memory_usage_mb=None,
        max_tokens=encoder.max_length,
        embed_dim=dim or config.hidden_size,
        license=None,
        open_weights=True,
        public_training_code="https://github.com/codefuse-ai/CodeFuse-Embeddings/tree/main/F2LLM",
        public_training_data=None,
        framework=["JAX", "safetensors"],
        similarity_fn_name=ScoringFunction.COSINE,
        use_instructions=use_instructions,
        training_datasets=None,
        modalities=["text"],
        model_type=["dense"],
        experiment_kwargs={"dim": dim} if dim else None,
    )


class MTEBModel:
    """Evaluate an f2jax Encoder with mteb.

    Args:
        encoder: the model (`f2jax.load(path)`).
        dim: Matryoshka dimension (truncate, then normalise); None = full hidden size.
        prompts: instruction overrides, keyed by mteb task name or task type
            (e.g. ``{"STS": "...", "MyRetrievalTask": "..."}``); '' disables the prompt.
        name: model name for result files ("org/model"); "f2jax/" is prefixed if no slash.
        batch_size: Encoder batch size (mteb's own `batch_size` only sizes its DataLoader).
        revision: recorded in the results path; defaults to "no_revision_available".
    """

    def __init__(self, encoder: Encoder, *, dim: int | None = None,
                 prompts: Mapping[str, str] | None = None, name: str | None = None,
                 batch_size: int = 32, revision: str | None = None):
        hidden = encoder.config.hidden_size
        if dim is not None and not 1 <= dim <= hidden:
            raise ValueError(f"dim must be in [1, {hidden}], got {dim}")
        self.encoder, self.dim, self.batch_size = encoder, dim, batch_size
        self.prompts = dict(prompts or {})
        self.mteb_model_meta = model_meta(encoder, name=name or DEFAULT_NAME, revision=revision,
                                          dim=dim)

    def prompt_for(self, task_metadata: TaskMetadata, prompt_type: Any = None) -> str:
        """The literal prefix the texts of this task side receive."""
        kind = getattr(prompt_type, "value", prompt_type)
        return resolve_prompt(task_metadata.name, task_metadata.type, kind, self.prompts)

    def encode(self, inputs: Iterable[Any], *, task_metadata: TaskMetadata, hf_split: str,
               hf_subset: str, prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        """Embeddings [N, dim or hidden], float32, L2-normalised."""
        texts = _texts(inputs)
        prompt = self.prompt_for(task_metadata, prompt_type)
        return self.encoder.encode(texts, prompt=prompt or None, dim=self.dim,
                                   batch_size=self.batch_size)

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
        """Cosine similarity matrix [N1, N2] (torch tensor, as mteb's evaluators expect)."""
        from mteb.similarity_functions import cos_sim

        return cos_sim(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Any:
        """Cosine similarity of row pairs [N]."""
        from mteb.similarity_functions import pairwise_cos_sim

        return pairwise_cos_sim(embeddings1, embeddings2)
