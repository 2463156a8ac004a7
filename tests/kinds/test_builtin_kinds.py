"""Built-in kinds end to end in one process: the PCA-k kind's closed-form step is saved and
used, and every kind's columns match what its inference writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surveyproc.jobs import TrainSection
from surveyproc.kinds import build_network, get_kind, registered_kinds
from surveyproc.models import load_checkpoint
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.testing import seeded_checkpoint
from surveyproc.train import train_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    return synthesize(str(root / "s.zarr"), SynthConfig(n=800, size=16, seed=9),
                      chunk_objects=100, parallel=False)


def test_pca_kind_fits_its_components_after_training_and_saves_them(store, tmp_path):
    section = get_kind("pca").settings(name="p", kind="pca", targets=["redshift"], k=4, width=8)
    trained = train_model(store, section, TrainSection(epochs=1, batch_size=64),
                          url=str(tmp_path / "p.pt"))
    checkpoint = load_checkpoint(trained.url)
    model = build_network(checkpoint)
    assert bool(model.fitted)
    x = checkpoint.normalization.apply(store.read(0, 64).images)
    with torch.inference_mode():
        features = model.features(x)
        by_hand = ((features - model.pca_mean) @ model.pca_components.T) @ model.pca_coef.T \
            + model.pca_intercept
        torch.testing.assert_close(model(x).prediction, by_hand)
    assert np.isfinite(checkpoint.metrics["val"]["rmse_redshift"])


@pytest.mark.parametrize("kind", [k for k in registered_kinds() if get_kind(k).writes_catalog])
def test_a_kinds_outputs_are_exactly_its_columns(store, kind):
    settings = {"k": 3} if kind in ("sfnet", "pca") else {}
    if kind in ("binned_density", "mixture_density"):
        settings = {"grid": {"low": 0.0, "high": 0.4, "n_bins": 20}}
    if kind == "deep_ensemble":
        settings = {"grid": {"low": 0.0, "high": 0.4, "n_bins": 20}, "members": 2, "width": 8}
    if kind == "clap":
        settings = {"grid": {"low": 0.0, "high": 0.4, "n_bins": 20}, "members": 2, "width": 8}
    if kind == "mi_decomposition":
        settings = {"inputs": ["images", "photometry"]}
    checkpoint = seeded_checkpoint(store, kind, ["redshift"], **settings)
    entry = get_kind(kind)
    columns = entry.columns("m", checkpoint)
    from surveyproc.catalog import CatalogSchema

    expected = {f.name for f in CatalogSchema([columns]).arrow()} - {
        "object_id", "ra", "dec", "flags", "run_id", "model_id"}
    x = checkpoint.normalization.apply(store.read(0, 8).images)
    truth = np.linspace(0.0, 0.4, 8, dtype=np.float32)[:, None] if entry.needs_truth else None
    with torch.inference_mode():
        out = entry.infer(build_network(checkpoint), x, columns, checkpoint, truth)
    assert set(out) == expected
    assert all(len(v) == 8 for v in out.values())
