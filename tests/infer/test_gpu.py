"""The CUDA path of inference (pinned transfer, channels_last, bf16 autocast) against the
CPU path on the same checkpoints: run wherever a CUDA device is present, skipped (with the
reason) elsewhere; the CPU path itself is covered by every other inference test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surveyproc.infer.estimate import Estimator, model_columns
from surveyproc.testing import seeded_checkpoint, tiny_store

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def test_cuda_estimates_match_cpu_within_bf16_precision():
    store = tiny_store(64, chunk=16, bands=3, size=32)
    checkpoints = [seeded_checkpoint(store, "sfnet", ["redshift"], k=3, seed=1),
                   seeded_checkpoint(store, "binned_density", ["redshift"], seed=2,
                                     grid={"low": 0.0, "high": 0.1, "n_bins": 20})]
    pairs = [(model_columns(f"m{i}", c), c) for i, c in enumerate(checkpoints)]
    images = store.read(0, 64).images
    cpu = Estimator(pairs[:1], "cpu")(images)
    gpu = Estimator(pairs[:1], "cuda")(images)
    assert set(cpu) == set(gpu)
    for name, values in cpu.items():
        if name.endswith("act_idx"):
            continue  # a bf16 near-tie may reorder two active features
        np.testing.assert_allclose(gpu[name], values, rtol=0.05, atol=0.05)
    density_cpu = Estimator(pairs[1:], "cpu")(images)["redshift_pdf"]
    density_gpu = Estimator(pairs[1:], "cuda")(images)["redshift_pdf"]
    np.testing.assert_allclose(density_gpu.sum(1), density_cpu.sum(1), rtol=1e-2)
