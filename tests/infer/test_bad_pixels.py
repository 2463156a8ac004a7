"""Bad pixels never poison a batch: flagged rows, and every other row bit-identical."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from surveyproc.catalog import read_catalog
from surveyproc.flags import Flag
from surveyproc.infer import run_inference
from surveyproc.jobs import JobSpec
from surveyproc.models import save_checkpoint
from surveyproc.store import SurveyStore
from surveyproc.store.create import StoreWriter
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.testing import seeded_checkpoint

N = 96
BAD = {5: "nan", 6: "inf", 40: "zero", 41: "zero_band", 70: "saturated"}


def _spoil(store: SurveyStore) -> None:
    """Spoil the cutouts of :data:`BAD` in place (all in one model batch)."""
    images = store.read(0, store.n_objects).images.copy()
    for row, kind in BAD.items():
        if kind == "nan":
            images[row, 0, 3:6, 3:6] = np.nan
        elif kind == "inf":
            images[row, 1, 0, 0] = np.inf
        elif kind == "zero":
            images[row] = 0.0
        elif kind == "zero_band":
            images[row, 2] = 0.0
        else:  # a clipped core: the brightest 3x3 pixels all at one level
            cy, cx = np.unravel_index(np.argmax(images[row, 0]), images.shape[2:])
            images[row, 0, cy - 1:cy + 2, cx - 1:cx + 2] = images[row, 0].max() * 2
    StoreWriter(store.url).write_images(0, images)


def _catalog(store_url: str, checkpoint_dir: str, tag: str):
    job = JobSpec.model_validate({
        "name": "px", "store": {"url": store_url},
        "output": {"dir": checkpoint_dir}, "resources": {"batch_size": 128},
        "models": [{"name": "sf", "kind": "sfnet", "k": 3, "width": 8,
                    "targets": ["metallicity"]}],
        "infer": {"catalog": f"{checkpoint_dir}/{tag}"}, "metrics": {"enabled": False}})
    from surveyproc.store import open_store

    result = run_inference(job, open_store(store_url))
    assert result.complete
    return read_catalog(f"{checkpoint_dir}/{tag}")


def test_bad_cutouts_are_flagged_and_leave_the_rest_of_their_batch_bit_identical():
    stores = [synthesize(f"memory://bad-pixels/{uuid.uuid4().hex}.zarr",
                         SynthConfig(n=N, size=16, seed=5), chunk_objects=N) for _ in range(2)]
    out = f"memory://bad-pixels-out/{uuid.uuid4().hex}"
    save_checkpoint(seeded_checkpoint(stores[0], "sfnet", ["metallicity"], k=3, seed=1),
                    f"{out}/checkpoints/sf.pt")
    _spoil(stores[1])
    clean = _catalog(stores[0].url, out, "clean")
    dirty = _catalog(stores[1].url, out, "dirty")

    flags = dirty.column("flags").to_numpy()
    expected = {"nan": Flag.NAN_PIXELS, "inf": Flag.NAN_PIXELS, "zero": Flag.EMPTY,
                "zero_band": Flag.EMPTY, "saturated": Flag.SATURATED}
    for row, kind in BAD.items():
        assert flags[row] & expected[kind], (row, kind, flags[row])
    others = np.setdiff1d(np.arange(N), list(BAD))
    assert (flags[others] & (Flag.NAN_PIXELS | Flag.EMPTY | Flag.SATURATED) == 0).all()
    mean = dirty.column("metallicity_mean").to_numpy()
    assert np.isnan(mean[40]) and np.isfinite(mean[[5, 6, 41, 70]]).all()
    assert (dirty.column("act_idx")[40].as_py() == [-1, -1, -1])
    for name in clean.column_names:
        if name in {"run_id", "flags"}:
            continue
        a, b = clean.column(name).take(others), dirty.column(name).take(others)
        assert a.equals(b), name  # bit for bit, NaN-free columns of untouched rows


@pytest.mark.parametrize("value", [np.nan, 0.0])
def test_a_batch_of_nothing_but_bad_cutouts_still_commits(value):
    store = synthesize(f"memory://bad-pixels/{uuid.uuid4().hex}.zarr",
                       SynthConfig(n=16, size=16, seed=6), chunk_objects=16)
    out = f"memory://bad-pixels-out/{uuid.uuid4().hex}"
    save_checkpoint(seeded_checkpoint(store, "sfnet", ["metallicity"], k=3, seed=1),
                    f"{out}/checkpoints/sf.pt")
    batch = store.read(0, 16)
    batch.images[:] = value
    writer = StoreWriter(store.url)
    writer.write_images(0, batch.images)
    table = _catalog(store.url, out, "all-bad")
    assert table.num_rows == 16 and np.isnan(table.column("metallicity_mean").to_numpy()).all()


def test_fast_pixel_checks_agree_with_pixel_by_pixel_checks():
    """The three-pass checks equal the pixel-by-pixel definition on every kind of cutout,
    including objects where a NaN or infinite pixel sends them down the exact path."""
    from surveyproc.infer.estimate import _pixel_checks_exact, pixel_checks

    rng = np.random.default_rng(3)
    images = rng.normal(size=(400, 3, 8, 8)).astype(np.float32)
    kinds = rng.integers(0, 8, size=len(images))
    for row, kind in enumerate(kinds):
        band = rng.integers(0, 3)
        if kind == 1:
            images[row, band, rng.integers(0, 8), rng.integers(0, 8)] = np.nan
        elif kind == 2:
            images[row, band, 0, rng.integers(0, 8)] = rng.choice([np.inf, -np.inf])
        elif kind == 3:
            images[row, band] = 0.0
        elif kind == 4:
            images[row] = 0.0
        elif kind == 5:
            images[row, band, :2, :2] = images[row, band].max() + 1
        elif kind == 6:  # nothing but zeros and NaN: no signal
            images[row] = 0.0
            images[row, band, 1, 1] = np.nan
        elif kind == 7:  # a flat band at a positive level is not saturated
            images[row, band] = 2.0
    flags, no_signal = pixel_checks(images)
    exact_flags, exact_no_signal = _pixel_checks_exact(images.reshape(len(images), 3, -1))
    assert np.array_equal(flags, exact_flags)
    assert np.array_equal(no_signal, exact_no_signal)
    assert len(set(flags.tolist())) >= 4 and no_signal.sum() > 10
