"""Attention alone on packed rows (`gpu-check --parts packed`) at its tiny CPU shape: every kernel
that runs here matches the float32 reference on real tokens, and cuDNN says why it skipped."""

from __future__ import annotations

import numpy as np

from f2jax.bench.packed_attention import bench_packed_attention, packed_layout


def test_layout_is_the_packers():
    seg, offsets, seqlens = packed_layout(40, 16, 64)
    assert seg.shape[1] == 64 and offsets.shape == (seg.shape[0], seqlens.shape[1] + 1)
    assert int((seg > 0).sum()) == int(seqlens[seqlens > 0].sum())


def test_tiny_kernels_match_the_reference():
    r = bench_packed_attention(tiny=True)
    assert not [k for k in r if k.endswith("_error")], {k: v for k, v in r.items() if k.endswith("_error")}
    assert "CUDA GPU" in r["packed_cudnn_unavailable"] and "packed_cudnn_ms" not in r
    for name in ("chunked", "xla", "pallas_triton"):
        assert r[f"packed_{name}_ms"] > 0 and r[f"packed_{name}_nonfinite"] == 0
        assert r[f"packed_{name}_out_max_abs"] < 1e-4 and r[f"packed_{name}_grad_max_abs"] < 1e-4
    assert np.isfinite(r["packed_real_tokens"])
