import os

import pytest

from f2jax.distributed import ensure_cpu_collective_threads

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# XLA:CPU's pool must outnumber the collectives the simulated devices can block in, or they
# deadlock; size it before JAX starts, as `f2jax train` does (subprocesses inherit it).
ensure_cpu_collective_threads()


@pytest.fixture(scope="session")
def demo_tokenized(tmp_path_factory):
    """The bundled demo data tokenised once at max length 64 (trainer, prune and report tests)."""
    from f2jax.data import demo_data_dir, tokenize_sources

    out = tmp_path_factory.mktemp("demo_tok")
    tokenize_sources(demo_data_dir(), out, max_length=64, workers=1)
    return out


@pytest.fixture(scope="session")
def exported_tiny(tmp_path_factory):
    """(encoder, export_dir): a tiny random Qwen3 with the real tokenizer, loaded by f2jax and
    exported with `save_pretrained`; shared by the export and evaluation tests."""
    from tiny_models import make_hf_model

    import f2jax

    src, _ = make_hf_model(tmp_path_factory.mktemp("tiny_src"))
    encoder = f2jax.load(src, max_length=128)
    return encoder, encoder.save_pretrained(tmp_path_factory.mktemp("tiny_export"))
