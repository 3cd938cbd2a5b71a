import os

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# XLA:CPU runs a program's independent collectives at once on a pool of max(cores, devices)
# threads; with 8 simulated devices on 2 cores two collectives can fill it and deadlock (see
# f2jax.distributed.ensure_cpu_collective_threads). Size it before JAX starts.
os.environ.setdefault("PJRT_NPROC", "32")



@pytest.fixture(scope="session")
def exported_tiny(tmp_path_factory):
    """(encoder, export_dir): a tiny random Qwen3 with the real tokenizer, loaded by f2jax and
    exported with `save_pretrained`; shared by the export and evaluation tests."""
    from tiny_models import make_hf_model

    import f2jax

    src, _ = make_hf_model(tmp_path_factory.mktemp("tiny_src"))
    encoder = f2jax.load(src, max_length=128)
    return encoder, encoder.save_pretrained(tmp_path_factory.mktemp("tiny_export"))
