from __future__ import annotations

import itertools

import pytest

from surveyproc.errors import InvalidParameterError
from surveyproc.store import plan_shards


@pytest.mark.parametrize(("n", "unit"), [(1, 1), (1000, 256), (1024, 256), (7, 3), (5, 100)])
@pytest.mark.parametrize("mode", [{}, {"objects_per_shard": 500}, {"n_shards": 3},
                                  {"n_shards": 1000}])
def test_shards_cover_every_object_once_on_unit_edges(n, unit, mode):
    shards = plan_shards(n, unit, **mode)
    assert shards[0].start == 0 and shards[-1].stop == n
    for a, b in itertools.pairwise(shards):
        assert a.stop == b.start
    for shard in shards:
        assert len(shard) > 0
        assert shard.start % unit == 0
        assert shard.stop % unit == 0 or shard.stop == n
    assert [s.index for s in shards] == list(range(len(shards)))


def test_n_shards_balances_units():
    sizes = [len(s) for s in plan_shards(1000, 100, n_shards=3)]
    assert sizes == [400, 300, 300]


def test_bad_arguments_are_refused():
    with pytest.raises(InvalidParameterError, match="not both"):
        plan_shards(10, 2, objects_per_shard=4, n_shards=2)
    with pytest.raises(InvalidParameterError, match="n_shards must be at least 1"):
        plan_shards(10, 2, n_shards=0)
    assert plan_shards(0, 4) == []
