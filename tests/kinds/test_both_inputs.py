"""``inputs: both``: a network that reads a galaxy's cutouts and its photometry together,
trained and applied through the same paths as the single inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surveyproc.errors import CheckpointMismatchError, InvalidParameterError
from surveyproc.infer.estimate import Estimator, model_columns
from surveyproc.jobs import TrainSection
from surveyproc.kinds import build_network, get_kind
from surveyproc.models import load_checkpoint
from surveyproc.models.inputs import CombinedInput
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.train import train_model

GRID = {"low": 0.0, "high": 0.4, "n_bins": 20}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("both")
    return synthesize(str(root / "s.zarr"), SynthConfig(n=600, size=16, seed=4),
                      chunk_objects=200, parallel=False)


def test_a_model_reading_both_trains_infers_and_uses_each_part(store, tmp_path):
    section = get_kind("mixture_density").settings(
        name="m", kind="mixture_density", targets=["redshift"], inputs="both", width=8,
        mlp_hidden=16, components=2, grid=GRID)
    trained = train_model(store, section, TrainSection(epochs=1, batch_size=64),
                          url=str(tmp_path / "m.pt"))
    checkpoint = load_checkpoint(trained.url)
    model_input = checkpoint.model_input()
    assert isinstance(model_input, CombinedInput)
    assert model_input.shape == (len(store.bands), 16, 16)
    assert model_input.photometry.bands == tuple(store.layout.photometry_bands)
    assert checkpoint.image_size == [16, 16] and checkpoint.normalization.scale
    # one pass of the estimator reads pixels and photometry, and writes the PDF columns
    batch = store.read(0, 32)
    estimator = Estimator([(model_columns("m", checkpoint), checkpoint)])
    assert estimator.reads_images and estimator.reads_photometry
    out = estimator(batch.images, batch.photometry, batch.photometry_error)
    np.testing.assert_allclose(out["redshift_pdf"].sum(axis=1) * 0.02, 1.0, rtol=1e-4)
    # the network's answer moves with either part alone
    network = build_network(checkpoint).eval()
    raw = model_input.raw(batch.images, batch.photometry, batch.photometry_error)
    pixels = model_input.pixels
    with torch.inference_mode():
        base = network(model_input.apply(raw)).means
        for part in (slice(0, pixels), slice(pixels, None)):
            changed = raw.copy()
            changed[:, part] *= 3.0
            assert not torch.allclose(network(model_input.apply(changed)).means, base)


def test_a_model_reading_both_refuses_a_store_without_either(store, tmp_path):
    from surveyproc.testing import seeded_checkpoint

    checkpoint = seeded_checkpoint(store, "binned_density", ["redshift"], grid=GRID)
    checkpoint.config.update(inputs="both", image_shape=[len(store.bands), 16, 16],
                             photometry_input={"bands": ["g", "r"], "softening": [1, 1],
                                               "errors": False, "mean": [0, 0, 0],
                                               "std": [1, 1, 1]})
    with pytest.raises(CheckpointMismatchError, match="reads images but store s has none"):
        checkpoint.check_store(store.bands, (16, 16), "store s", has_images=False,
                               photometry_bands=("g", "r"))
    with pytest.raises(CheckpointMismatchError, match="no photometry of r"):
        checkpoint.check_store(store.bands, (16, 16), "store s", photometry_bands=("g",))
    checkpoint.check_store(store.bands, (16, 16), "store s", photometry_bands=("g", "r"))
    # a kind that does not offer both says so before training
    section = get_kind("clap").settings(name="c", kind="clap", targets=["redshift"],
                                        inputs="both", grid=GRID)
    with pytest.raises(InvalidParameterError, match="kind clap reads images, photometry, "
                                                    "not both"):
        train_model(store, section, TrainSection(epochs=1, batch_size=64),
                    url=str(tmp_path / "c.pt"))
