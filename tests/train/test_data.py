"""Shard streams: each training row exactly once per epoch, a stable split, seeded shuffles."""

from __future__ import annotations

import numpy as np
import pytest

from surveyproc.models import Normalization, resolve_targets
from surveyproc.models.inputs import ImageInput
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.train import StoreBatches, split_of, target_statistics


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = str(tmp_path_factory.mktemp("data") / "s.zarr")
    return synthesize(url, SynthConfig(n=600, size=16, bands=("g", "r")), chunk_objects=64,
                      parallel=False)


def test_split_is_a_stable_function_of_the_id():
    ids = np.arange(10_000, 30_000)
    codes = split_of(ids, 0.1, 0.2)
    np.testing.assert_array_equal(codes, split_of(ids, 0.1, 0.2))
    np.testing.assert_array_equal(codes[5000:6000], split_of(ids[5000:6000], 0.1, 0.2))
    assert abs((codes == 1).mean() - 0.1) < 0.01 and abs((codes == 2).mean() - 0.2) < 0.01


def _stream(store, split, shuffle=True, seed=0, batch_size=32):
    specs = resolve_targets(["metallicity"], store.label_names)
    return StoreBatches(store, store.plan_shards(), split, specs,
                        ImageInput(Normalization((0.01, 0.01))),
                        0.1, 0.1, batch_size=batch_size, shuffle=shuffle, seed=seed,
                        buffer_objects=100)


def test_every_known_training_row_once_per_epoch(store):
    batch = store.read(0, store.n_objects, images=False)
    train = (split_of(batch.object_id, 0.1, 0.1) == 0) & np.isfinite(
        batch.labels["metallicity"])
    stream = _stream(store, "train")
    for epoch in (0, 1):
        ids = np.concatenate([b[2] for b in stream.epoch(epoch)])
        assert sorted(ids.tolist()) == batch.object_id[train].tolist()
    first = np.concatenate([b[2] for b in stream.epoch(0)])
    again = np.concatenate([b[2] for b in stream.epoch(0)])
    second = np.concatenate([b[2] for b in stream.epoch(1)])
    np.testing.assert_array_equal(first, again)  # seeded
    assert not np.array_equal(first, second)  # reshuffled per epoch
    x, y, ids = next(iter(stream.epoch(0)))
    assert x.shape == (32, 2, 16, 16) and y.shape == (32, 1)
    assert np.isfinite(y.numpy()).all()
    np.testing.assert_allclose(y.numpy()[:, 0],
                               batch.labels["metallicity"][np.searchsorted(batch.object_id,
                                                                           ids)])


def test_no_batch_of_one_row_which_batchnorm_cannot_train_on(store):
    n_train = sum(len(b[2]) for b in _stream(store, "train").epoch())
    stream = _stream(store, "train", batch_size=(n_train - 1) // 3)  # remainder: one row
    sizes = [len(b[2]) for b in stream.epoch(0)]
    assert sum(sizes) == n_train and min(sizes) > 1, sizes


def test_validation_stream_is_in_store_order_and_disjoint(store):
    val = np.concatenate([b[2] for b in _stream(store, "val", shuffle=False).epoch()])
    assert val.tolist() == sorted(val.tolist())
    train = np.concatenate([b[2] for b in _stream(store, "train").epoch()])
    assert not set(val) & set(train)


def test_target_statistics_use_the_training_split_only(store):
    specs = resolve_targets(["redshift"], store.label_names)
    mean, std, usable = target_statistics(store, specs, 0.1, 0.1)
    batch = store.read(0, store.n_objects, images=False)
    train = split_of(batch.object_id, 0.1, 0.1) == 0
    assert usable == train.sum()
    assert mean[0] == pytest.approx(batch.labels["redshift"][train].mean(), rel=1e-5)
    assert std[0] == pytest.approx(batch.labels["redshift"][train].std(), rel=1e-4)
