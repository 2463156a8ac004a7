"""A contiguous run of objects with all their columns, as read from or written to a store."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CutoutBatch"]


@dataclass
class CutoutBatch:
    """Objects ``[start, start + len)`` of a store.

    ``images`` is None when a reader was asked for columns only.  Arrays are
    plain NumPy so that a batch pickles cheaply between Ray workers.
    """

    start: int
    object_id: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    images: np.ndarray | None = None
    #: int32 bitmask per object; omitted = all zero.
    flags: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    photometry: dict[str, np.ndarray] = field(default_factory=dict)
    #: 1-sigma errors of ``photometry``, where the store has them
    photometry_error: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    #: the quarantined chunks whose pixels are NaN placeholders, "objects A-B: cause" each;
    #: empty when every pixel was read
    unreadable: list[str] = field(default_factory=list)
    #: (n, measures, bands) pixel measures the store keeps, when a reader asked for them
    #: and the store has them (``surveyproc.store.layout.PIXEL_MEASURES``); else None
    measures: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.object_id)
        if len(self.flags) == 0 and n:
            self.flags = np.zeros(n, dtype=np.int32)
        columns = {"ra": self.ra, "dec": self.dec, "flags": self.flags,
                   **{f"photometry/{k}": v for k, v in self.photometry.items()},
                   **{f"photometry_error/{k}": v for k, v in self.photometry_error.items()},
                   **{f"labels/{k}": v for k, v in self.labels.items()}}
        if self.images is not None:
            columns["images"] = self.images
        if self.measures is not None:
            columns["pixel_measures"] = self.measures
        for name, values in columns.items():
            if len(values) != n:
                msg = f"column {name!r} has {len(values)} rows but object_id has {n}"
                raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.object_id)

    @property
    def stop(self) -> int:
        """One past the last object index."""
        return self.start + len(self)

    @property
    def nbytes(self) -> int:
        """Bytes held by all arrays (what a reader moved, decompressed)."""
        arrays: list[np.ndarray] = [self.object_id, self.ra, self.dec, self.flags,
                                    *self.photometry.values(), *self.photometry_error.values(),
                                    *self.labels.values()]
        arrays += [a for a in (self.images, self.measures) if a is not None]
        return sum(int(a.nbytes) for a in arrays)

    @classmethod
    def concat(cls, batches: Sequence[CutoutBatch]) -> CutoutBatch:
        """Join consecutive batches into one; they must be contiguous and alike."""
        if not batches:
            msg = "cannot concatenate an empty list of batches"
            raise ValueError(msg)
        for before, after in itertools.pairwise(batches):
            if before.stop != after.start:
                msg = f"batches are not contiguous: {before.stop} then {after.start}"
                raise ValueError(msg)

        def cat(get):
            return np.concatenate([get(b) for b in batches])

        first = batches[0]
        return cls(
            start=first.start,
            object_id=cat(lambda b: b.object_id),
            ra=cat(lambda b: b.ra),
            dec=cat(lambda b: b.dec),
            images=None if first.images is None else cat(lambda b: b.images),
            measures=None if first.measures is None else cat(lambda b: b.measures),
            flags=cat(lambda b: b.flags),
            photometry={k: cat(lambda b, k=k: b.photometry[k]) for k in first.photometry},
            photometry_error={k: cat(lambda b, k=k: b.photometry_error[k])
                              for k in first.photometry_error},
            labels={k: cat(lambda b, k=k: b.labels[k]) for k in first.labels},
        )
