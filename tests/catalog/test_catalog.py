"""Catalog parts: PDF summaries, atomic commits, the manifest, and what readers see."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from surveyproc.catalog import (
    CatalogSchema,
    CatalogWriter,
    ModelColumns,
    catalog_schema,
    manifest,
    name_shared_columns,
    pdf_ensemble,
    read_catalog,
    summarize_pdfs,
)
from surveyproc.catalog.columns import STATS, stat_column
from surveyproc.catalog.pdf import pdf_mode
from surveyproc.catalog.writer import part_name
from surveyproc.errors import CatalogMismatchError, CatalogNotFoundError, InvalidParameterError
from surveyproc.fs import write_bytes_atomic
from surveyproc.models import Grid
from surveyproc.store.shards import Shard

GRID = Grid(low=0.0, high=0.4, n_bins=180)


def _gaussian_pdfs(means, sigmas):
    x = GRID.centres_array()
    pdf = np.exp(-0.5 * ((x[None] - np.asarray(means)[:, None]) / np.asarray(sigmas)[:, None]) ** 2)
    return pdf / (pdf.sum(axis=1, keepdims=True) * GRID.width)


def _summaries(pdf):
    s = summarize_pdfs(pdf, GRID)
    return s.mean, s.std, s.quantiles


def test_pdf_summaries_match_the_gaussians_they_were_drawn_from():
    means, sigmas = np.array([0.1, 0.2, 0.25]), np.array([0.01, 0.02, 0.03])  # 5 sigma inside
    mean, std, (q16, q50, q84) = _summaries(_gaussian_pdfs(means, sigmas))
    width = 0.4 / 180
    np.testing.assert_allclose(mean, means, atol=1e-6)
    np.testing.assert_allclose(std, np.sqrt(sigmas**2 + width**2 / 12), rtol=2e-3)
    np.testing.assert_allclose(q50, means, atol=width / 2)
    np.testing.assert_allclose(q84 - q16, 2 * 0.9945 * sigmas, rtol=0.03)


def test_pdf_summaries_agree_with_qp():
    qp = pytest.importorskip("qp")
    pdf = _gaussian_pdfs([0.12, 0.25], [0.015, 0.04])
    pdf[1] += 0.6 * _gaussian_pdfs([0.05], [0.01])[0]  # bimodal
    mean, _, (q16, q50, q84) = _summaries(pdf)
    ens = qp.Ensemble(qp.interp, data={"xvals": GRID.centres_array(), "yvals": pdf})
    np.testing.assert_allclose(mean, ens.mean().ravel(), atol=0.4 / 180)
    for q, ours in ((0.16, q16), (0.5, q50), (0.84, q84)):
        np.testing.assert_allclose(ours, ens.ppf(q).ravel(), atol=0.4 / 180)


def test_the_mode_sits_on_the_likelier_peak_of_a_two_peaked_pdf():
    pdf = 0.6 * _gaussian_pdfs([0.08], [0.01]) + 0.4 * _gaussian_pdfs([0.3], [0.01])
    summary = summarize_pdfs(pdf, GRID)
    assert summary.mode[0] == pytest.approx(0.08, abs=GRID.width / 4)
    assert 0.15 < summary.mean[0] < 0.2  # between the peaks, where the galaxy is not
    # the parabola refines the peak within its bin
    shifted = _gaussian_pdfs([0.1013], [0.01])
    assert pdf_mode(shifted * GRID.width, GRID)[0] == pytest.approx(0.1013, abs=2e-4)


def _schema(**extra):
    models = [ModelColumns("photoz", "abc", "binned_density", ("redshift",), ("",), "pdf",
                           grid=GRID),
              ModelColumns("sf", "def", "sfnet", ("metallicity",), ("dex",), "validation_rmse",
                           k=3, spread=(0.1,))]
    return CatalogSchema(models, {"store": {"url": "s", "n_objects": 10}, **extra})


def _table(schema: CatalogSchema, start: int, stop: int) -> pa.Table:
    n = stop - start
    rng = np.random.default_rng(start)
    columns = {"object_id": np.arange(start, stop), "ra": np.zeros(n), "dec": np.zeros(n),
               "flags": np.zeros(n, np.int32),
               "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), ["r"]),
               "model_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)),
                                                          [schema.model_id])}
    for t in ("redshift", "metallicity"):
        for s in STATS:
            columns[stat_column(t, s)] = rng.random(n).astype(np.float32)
    columns["redshift_mode"] = rng.random(n).astype(np.float32)
    columns["redshift_pdf"] = list(_gaussian_pdfs(rng.uniform(0.1, 0.3, n), [0.02] * n)
                                   .astype(np.float32))
    columns["act_idx"] = [np.array([1, 5, 9], np.int16)] * n
    columns["act_val"] = [np.array([3.0, 2.0, 1.0], np.float32)] * n
    return pa.Table.from_pydict(columns, schema=schema.arrow())


def test_two_models_of_one_target_get_their_own_columns():
    first = _schema().models[0]
    twice = ModelColumns("b", "x", "sfnet", ("redshift",), ("",), "validation_rmse")
    # named as they come, two estimates of redshift would share columns: refused
    with pytest.raises(InvalidParameterError, match="both write column redshift_mean"):
        CatalogSchema([first, twice])
    named = name_shared_columns([first, twice])
    schema = CatalogSchema(named)
    names = schema.arrow().names
    assert {"photoz_redshift_pdf", "photoz_redshift_q50", "b_redshift_q50"} <= set(names)
    assert "redshift_q50" not in names
    assert schema.find_estimate("b_redshift") == (named[1], "redshift")
    # a kind's outputs get the model's names; other columns stay as they are
    outputs = {"redshift_q50": 1, "redshift_pdf": 2, "b_latent": 3}
    assert named[1].name_estimates(outputs) == {"b_redshift_q50": 1, "redshift_pdf": 2,
                                                "b_latent": 3}
    # the description round-trips the prefix, so a reader finds the columns
    again = CatalogSchema.from_description(schema.describe())
    assert again.arrow().names == names
    # one model per target: names stay plain
    assert name_shared_columns([first]) == [first]


def test_commits_are_atomic_resumable_and_readable(tmp_path):
    url = str(tmp_path / "cat")
    schema = _schema()
    writer = CatalogWriter(url)
    assert writer.prepare(schema.describe()) == set()
    shards = [Shard(0, 0, 4), Shard(1, 4, 8), Shard(2, 8, 10)]
    writer.commit(shards[0], _table(schema, 0, 4), "r")
    writer.commit(shards[2], _table(schema, 8, 10), "r")
    # a crash between a part and its record leaves a part that does not count
    (tmp_path / "cat" / ".part-000001.parquet.tmp-1-x").write_bytes(b"partial")
    assert writer.prepare(schema.describe()) == {0, 2}
    with pytest.raises(CatalogMismatchError, match="incomplete: 1 shard"):
        writer.finish(3, 10)
    assert manifest(url) is None
    writer.commit(shards[1], _table(schema, 4, 8), "r")
    done = writer.finish(3, 10)
    assert done["rows"] == 10 and done["n_shards"] == 3
    assert [r.index for r in writer.records()] == [0, 1, 2]
    assert manifest(url)["complete"]

    # pyarrow (and so Dask) read the parts and nothing else: not the temporary, not the JSON
    assert ds.dataset(url, format="parquet").count_rows() == 10
    table = read_catalog(url)
    assert table.column("object_id").to_pylist() == list(range(10))
    assert table.column("act_idx")[0].as_py() == [1, 5, 9]
    assert catalog_schema(url).models[0].grid == GRID
    assert catalog_schema(url).models[1].spread == (0.1,)

    # PDFs come back as a qp ensemble on the recorded grid
    qp = pytest.importorskip("qp")
    ensemble = pdf_ensemble(table, catalog_schema(url), "redshift")
    assert isinstance(ensemble, qp.Ensemble) and ensemble.npdf == 10
    np.testing.assert_allclose(ensemble.pdf(np.array([0.2]))[:, 0],
                               [np.interp(0.2, GRID.centres_array(), row)
                                for row in table.column("redshift_pdf").to_pylist()],
                               rtol=1e-5)


def test_a_catalog_of_other_models_is_refused_or_overwritten(tmp_path):
    url = str(tmp_path / "cat")
    writer = CatalogWriter(url)
    writer.prepare(_schema().describe())
    writer.commit(Shard(0, 0, 10), _table(_schema(), 0, 10), "r")
    other = _schema().describe()
    other["models"][1]["model_id"] = "zzz"
    with pytest.raises(CatalogMismatchError, match=r"other models .*infer\.overwrite=true"):
        writer.prepare(other)
    assert writer.prepare(other, overwrite=True) == set()
    assert json.loads((tmp_path / "cat" / "_catalog.json").read_text())["models"][1][
        "model_id"] == "zzz"


def test_a_part_must_hold_its_whole_shard(tmp_path):
    writer = CatalogWriter(str(tmp_path / "cat"))
    writer.prepare(_schema().describe())
    with pytest.raises(ValueError, match="shard 0 has 5 objects but 4 rows"):
        writer.commit(Shard(0, 0, 5), _table(_schema(), 0, 4), "r")


def test_readers_take_only_committed_parts(tmp_path):
    """A crash after a part is renamed into place but before its commit record is written
    leaves a complete-looking part: readers must not take it."""
    url = str(tmp_path / "cat")
    schema = _schema(shards={"count": 3})
    writer = CatalogWriter(url)
    writer.prepare(schema.describe())
    writer.commit(Shard(0, 0, 4), _table(schema, 0, 4), "r")
    writer.commit(Shard(2, 8, 10), _table(schema, 8, 10), "r")
    # the first half of a commit: the part, no record
    buffer = pa.BufferOutputStream()
    import pyarrow.parquet as pq

    pq.write_table(_table(schema, 4, 8), buffer)
    write_bytes_atomic(f"{url}/{part_name(1)}", buffer.getvalue().to_pybytes())
    assert read_catalog(url).column("object_id").to_pylist() == [0, 1, 2, 3, 8, 9]
    from surveyproc.catalog import committed_parts

    parts = committed_parts(url)
    assert not parts.complete and parts.summary == "2 of 3 shards committed"
    assert read_catalog(url, columns=["object_id"]).num_columns == 1


def test_missing_catalog_is_one_line(tmp_path):
    with pytest.raises(CatalogNotFoundError, match=r"_catalog\.json"):
        read_catalog(str(tmp_path / "nope"))
    with pytest.raises(CatalogNotFoundError, match=r"_catalog\.json"):
        catalog_schema(str(tmp_path / "nope"))
