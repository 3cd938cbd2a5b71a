"""Training data: raw-source validation, tokenisation (TFDS ArrayRecord), the Grain pipeline,
and a small bundled demo dataset. Imports are lazy so that `import f2jax.data` stays cheap."""

from f2jax.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "DataValidationError": "f2jax.data.validate",
    "validate_source": "f2jax.data.validate",
    "validate_tokenized": "f2jax.data.checks",
    "find_sources": "f2jax.data.sources",
    "tokenize_sources": "f2jax.data.tokenize",
    "make_pipeline": "f2jax.data.pipeline",
    "make_validation_iterator": "f2jax.data.pipeline",
    "to_global": "f2jax.data.pipeline",
    "demo_data_dir": "f2jax.data.demo_build",
})
