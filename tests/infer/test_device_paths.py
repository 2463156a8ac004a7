"""The parts of the GPU code paths that run on a CPU: channels_last and bf16 autocast
through every built-in kind's inference, the training loop's batch placement; and,
marked ``gpu`` (run wherever CUDA is present), Ray Train with ``use_gpu``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surveyproc.infer.estimate import model_columns
from surveyproc.kinds import build_network, get_kind
from surveyproc.testing import seeded_checkpoint, tiny_store
from surveyproc.train.loop import _autocast, _on_device

GRID = {"low": 0.0, "high": 0.1, "n_bins": 20}
KINDS = [("sfnet", {"k": 3}), ("dense_cnn", {}), ("binned_density", {"grid": GRID})]


@pytest.fixture(scope="module")
def store():
    return tiny_store(32, chunk=16, bands=3, size=32)


@pytest.mark.parametrize(("kind", "settings"), KINDS, ids=[k for k, _ in KINDS])
def test_channels_last_and_bf16_autocast_give_the_plain_estimates(store, kind, settings):
    checkpoint = seeded_checkpoint(store, kind, ["redshift"], seed=1, **settings)
    columns, model_kind = model_columns("m", checkpoint), get_kind(kind)
    module = build_network(checkpoint).eval()
    x = checkpoint.normalization.apply(torch.from_numpy(store.read(0, 32).images))
    with torch.inference_mode():
        plain = model_kind.infer(module, x, columns, checkpoint)
        last = model_kind.infer(module.to(memory_format=torch.channels_last),
                                x.contiguous(memory_format=torch.channels_last), columns,
                                checkpoint)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model_kind.infer(module, x, columns, checkpoint)
    assert set(plain) == set(last) == set(half)
    for name, values in plain.items():
        assert half[name].dtype == values.dtype  # bf16 never reaches the catalog
        np.testing.assert_allclose(last[name], values, rtol=1e-4, atol=1e-5)
        if not name.endswith("act_idx"):  # a bf16 near-tie may reorder two active features
            np.testing.assert_allclose(half[name], values, rtol=0.1, atol=0.05)


def test_batches_stay_where_they_are_on_a_cpu_model():
    model = torch.nn.Linear(2, 1)
    x, y = torch.ones(4, 2), torch.ones(4, 1)
    placed = _on_device(model, x, y)
    assert placed[0] is x and placed[1] is y  # no copy, no format change
    with _autocast(x):
        assert not torch.is_autocast_enabled("cuda")


@pytest.mark.gpu
@pytest.mark.ray_cluster
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_ray_train_with_use_gpu_learns_and_the_checkpoint_loads_on_cpu(tmp_path, ray_session):
    from surveyproc.jobs import JobSpec
    from surveyproc.models import load_checkpoint
    from surveyproc.store.synth import SynthConfig, synthesize
    from surveyproc.train import train_job

    store = synthesize(str(tmp_path / "s.zarr"), SynthConfig(n=800, size=16, seed=3),
                       chunk_objects=100)
    job = JobSpec.model_validate({
        "name": "gpu", "store": {"url": store.url}, "output": {"dir": str(tmp_path / "out")},
        "models": [{"name": "mass", "kind": "sfnet", "k": 4, "width": 8,
                    "targets": ["log_mstar"]}],
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.01, "workers": 1,
                  "cpus_per_worker": 1, "use_gpu": True},
        "metrics": {"enabled": False}})
    trained = train_job(job, store)[0]
    checkpoint = load_checkpoint(trained.url)
    assert all(t.device.type == "cpu" for t in checkpoint.state_dict.values())
    assert trained.metrics["val"]["rmse_log_mstar"] < 0.8 * checkpoint.targets[0].std
