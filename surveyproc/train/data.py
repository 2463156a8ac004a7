"""Minibatches for training, streamed from a store shard by shard.

No worker loads the whole store: each epoch visits the given shards in a
seeded random order, reads them with read-ahead, keeps the rows of the wanted
split that have at least one known target, and shuffles within a buffer of a
few thousand objects before cutting minibatches.  Distributed training hands
each worker its own disjoint list of shards and reuses this class unchanged.

The train/validation/test split is a hash of the object id, so it does not
depend on chunking, sharding, worker count or seed, and a galaxy never moves
between splits from one run to the next.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InvalidParameterError
from ..models.inputs import ModelInput
from ..models.targets import TargetSpec, label_columns, values_from_labels
from ..store import CutoutBatch, Shard, SurveyStore

__all__ = ["SPLITS", "StoreBatches", "split_of", "split_targets", "target_statistics"]

SPLITS = {"train": 0, "val": 1, "test": 2}
_SALT = np.uint64(0x5EED_5A1F_0B1E_C7ED)


def split_of(object_id: np.ndarray, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Split code per object (0 train, 1 val, 2 test) from a SplitMix64 hash of its id.

    Examples
    --------
    >>> codes = split_of(np.arange(100_000), 0.1, 0.1)
    >>> [round(float((codes == c).mean()), 2) for c in (0, 1, 2)]
    [0.8, 0.1, 0.1]
    """
    with np.errstate(over="ignore"):
        z = object_id.astype(np.uint64) ^ _SALT
        z = (z + np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.where(u < val_fraction, 1, np.where(u < val_fraction + test_fraction, 2, 0)) \
        .astype(np.int8)


def split_targets(store: SurveyStore, specs: Sequence[TargetSpec], val_fraction: float,
                  test_fraction: float, split: str = "train") -> np.ndarray:
    """(objects of ``split``, targets) values of the targets, NaN where unknown.

    Reads only the id and label columns (a few bytes per object), no pixels.
    """
    batch = store.read(0, store.n_objects, images=False, labels=label_columns(specs),
                       photometry=False)
    values = values_from_labels(batch.labels, len(batch), specs)
    return values[split_of(batch.object_id, val_fraction, test_fraction) == SPLITS[split]]


def target_statistics(store: SurveyStore, specs: Sequence[TargetSpec], val_fraction: float,
                      test_fraction: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean and std of each target over the training split, and its number of usable rows."""
    values = split_targets(store, specs, val_fraction, test_fraction)
    usable = int(np.isfinite(values).any(axis=1).sum())
    mean = np.nanmean(values, axis=0)
    std = np.nanstd(values, axis=0)
    return mean, np.where(std > 0, std, 1.0), usable


@dataclass
class StoreBatches:
    """Minibatches ``(x, y, object_id)`` of one split of a store.

    ``x`` is the network input ``model_input`` makes: normalised (batch, bands, h, w)
    cutouts, (batch, features) photometry, or both in one flat row; ``y`` the raw (batch,
    targets) target values with NaN where unknown, or, with a ``pair`` store (the same
    objects seen by another survey, for an image translator), that store's raw cutouts
    of the same objects: then every object of the split is kept.
    """

    store: SurveyStore
    shards: Sequence[Shard]
    split: str
    targets: Sequence[TargetSpec]
    model_input: ModelInput
    val_fraction: float
    test_fraction: float
    batch_size: int = 128
    shuffle: bool = True
    seed: int = 0
    buffer_objects: int = 4096
    pair: SurveyStore | None = None

    def __post_init__(self) -> None:
        self._labels = label_columns(self.targets)

    def raw_rows(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Raw ``(inputs, targets, ids)`` of the split, shard by shard (the pixels, or the
        photometry and its errors, before the input's normalisation)."""
        order = list(self.shards)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            order = [order[i] for i in rng.permutation(len(order))]
        code = SPLITS[self.split]
        model_input = self.model_input
        paired = (self.pair.iter_batches(order, prefetch=2, labels=False, photometry=False)
                  if self.pair is not None else None)
        for batch in self.store.iter_batches(order, prefetch=2, labels=self._labels,
                                             images=model_input.reads_images,
                                             photometry=model_input.reads_photometry):
            keep = split_of(batch.object_id, self.val_fraction, self.test_fraction) == code
            if paired is None:
                y = values_from_labels(batch.labels, len(batch), self.targets)
                keep &= np.isfinite(y).any(axis=1)
            else:
                y = _paired_cutouts(batch.object_id, next(paired))
            if keep.any():
                raw = model_input.raw(batch.images, batch.photometry, batch.photometry_error)
                yield raw[keep], y[keep], batch.object_id[keep]

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
        """One pass over the split, shuffled per ``(seed, epoch)`` when ``shuffle``; a lone
        last row joins the batch before it (BatchNorm cannot train on a batch of one)."""
        held: tuple[torch.Tensor, torch.Tensor, np.ndarray] | None = None
        for batch in self._batches(epoch):
            if held is not None and len(batch[2]) == 1 and self.batch_size > 1:
                held = (torch.cat([held[0], batch[0]]), torch.cat([held[1], batch[1]]),
                        np.concatenate([held[2], batch[2]]))
                continue
            if held is not None:
                yield held
            held = batch
        if held is not None:
            yield held

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
        rng = np.random.default_rng([self.seed, epoch, 1])
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        held = 0
        for part in self.raw_rows(epoch):
            parts.append(part)
            held += len(part[0])
            if held >= self.buffer_objects:
                yield from self._cut(parts, rng, final=False)
                held = sum(len(p[0]) for p in parts)
        yield from self._cut(parts, rng, final=True)

    def _cut(self, parts: list, rng: np.random.Generator, final: bool):
        if not parts:  # no rows of this split (e.g. a worker that does not validate)
            return
        images = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        ids = np.concatenate([p[2] for p in parts])
        order = rng.permutation(len(ids)) if self.shuffle else np.arange(len(ids))
        n_full = len(order) // self.batch_size * self.batch_size
        end = len(order) if final else n_full
        for start in range(0, end, self.batch_size):
            rows = order[start:start + self.batch_size]
            yield (self.model_input.apply(images[rows]), torch.from_numpy(y[rows]), ids[rows])
        rest = order[end:]
        parts[:] = [(images[rest], y[rest], ids[rest])] if len(rest) else []


def _paired_cutouts(object_id: np.ndarray, pair: CutoutBatch) -> np.ndarray:
    """The pair store's cutouts of the same rows, refused if they are other objects."""
    if not np.array_equal(object_id, pair.object_id):
        msg = (f"the paired store holds other objects at rows [{pair.start}, {pair.stop}): "
               "a translator's two stores must list the same objects in the same order")
        raise InvalidParameterError(msg)
    assert pair.images is not None
    return pair.images
