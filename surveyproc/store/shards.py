"""Split a store into chunk-aligned shards: the unit of work handed to a worker.

A shard is a contiguous range of objects whose edges fall on the store's write
unit (a chunk, or a Zarr shard when the store is sharded), so no two workers
ever read or decode the same chunk and every catalog part maps to whole chunks.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..errors import InvalidParameterError

__all__ = ["Shard", "plan_shards"]


@dataclass(frozen=True, order=True)
class Shard:
    """Objects ``[start, stop)`` of a store, numbered ``index`` in plan order."""

    index: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def plan_shards(
    n_objects: int,
    unit: int,
    *,
    objects_per_shard: int | None = None,
    n_shards: int | None = None,
) -> list[Shard]:
    """Plan shards over ``n_objects`` whose edges are multiples of ``unit``.

    Give at most one of ``objects_per_shard`` (rounded up to a whole number of
    units) or ``n_shards`` (units spread as evenly as possible; fewer shards
    when there are fewer units).  With neither, every unit is its own shard.

    Examples
    --------
    >>> [(s.start, s.stop) for s in plan_shards(1000, 256)]
    [(0, 256), (256, 512), (512, 768), (768, 1000)]
    >>> [(s.start, s.stop) for s in plan_shards(1000, 256, objects_per_shard=300)]
    [(0, 512), (512, 1000)]
    >>> [(s.start, s.stop) for s in plan_shards(1000, 100, n_shards=3)]
    [(0, 400), (400, 700), (700, 1000)]
    """
    if n_objects < 0 or unit < 1:
        msg = f"cannot plan shards for {n_objects} objects in units of {unit}"
        raise InvalidParameterError(msg)
    if objects_per_shard is not None and n_shards is not None:
        msg = "give objects_per_shard or n_shards, not both"
        raise InvalidParameterError(msg)
    n_units = -(-n_objects // unit)
    if objects_per_shard is not None:
        if objects_per_shard < 1:
            msg = f"objects_per_shard must be at least 1, got {objects_per_shard}"
            raise InvalidParameterError(msg)
        per = -(-objects_per_shard // unit)
        unit_edges = [*list(range(0, n_units, per)), n_units]
    elif n_shards is not None:
        if n_shards < 1:
            msg = f"n_shards must be at least 1, got {n_shards}"
            raise InvalidParameterError(msg)
        k = min(n_shards, n_units)
        base, extra = divmod(n_units, k) if k else (0, 0)
        unit_edges = [0]
        for i in range(k):
            unit_edges.append(unit_edges[-1] + base + (1 if i < extra else 0))
    else:
        unit_edges = list(range(n_units + 1))
    edges = [min(u * unit, n_objects) for u in unit_edges]
    return [Shard(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(edges))]
