"""Seeded generators for tests, examples and benchmarks (like ``numpy.testing``): tiny
stores, label-only stores, catalogs with known truth, untrained checkpoints.

Ship the generator, not fixtures: everything here builds its data on the fly.
The subprocess servers the tests use live in ``tests/support``.
"""

from __future__ import annotations

import uuid

import numpy as np

from .store import CutoutBatch, StoreSpec, StoreWriter, SurveyStore, create_store, open_store

__all__ = ["label_store", "seeded_checkpoint", "synthetic_catalog", "tiny_batch", "tiny_store"]


def tiny_batch(start: int, stop: int, bands: int = 2, size: int = 8,
               labels: tuple[str, ...] = ("redshift",)) -> CutoutBatch:
    """Objects ``[start, stop)`` whose every value encodes its index (easy to check).

    Pixel ``(b, y, x)`` of object ``i`` is ``i + b / 10``; ids are ``i``;
    ``labels/redshift`` is ``i / 1000``.
    """
    index = np.arange(start, stop)
    images = (index[:, None, None, None] + np.arange(bands)[None, :, None, None] / 10.0
              + np.zeros((1, 1, size, size)))
    return CutoutBatch(
        start=start,
        object_id=index.astype(np.int64),
        ra=150.0 + index * 1e-3,
        dec=2.0 + index * 1e-3,
        images=images.astype(np.float32),
        photometry={f"b{k}": (index + k).astype(np.float32) for k in range(bands)},
        labels={name: (index / 1000.0).astype(np.float32) for name in labels},
    )


def tiny_store(n: int = 100, *, chunk: int = 16, bands: int = 2, size: int = 8,
               url: str | None = None, shard_chunks: int | None = None,
               dtype: str = "float32", storage_options: dict | None = None) -> SurveyStore:
    """Write a small store of :func:`tiny_batch` objects (in memory unless ``url``) and open it."""
    url = url or f"memory://surveyproc-tiny/{uuid.uuid4().hex}.zarr"
    spec = StoreSpec(n_objects=n, bands=tuple(f"b{k}" for k in range(bands)), height=size,
                     width=size, labels=("redshift",), chunk_objects=chunk,
                     shard_chunks=shard_chunks, dtype=dtype, survey="tiny")
    create_store(url, spec, storage_options=storage_options, provenance={"generator": "tiny"})
    writer = StoreWriter(url, storage_options)
    unit = spec.write_unit
    for start in range(0, n, unit):
        writer.write(tiny_batch(start, min(start + unit, n), bands, size))
    writer.finalize()
    return open_store(url, storage_options)


def seeded_checkpoint(store: SurveyStore, kind: str, targets: list[str], *, seed: int = 0,
                      width: int = 8, **settings):
    """A real checkpoint for ``store`` whose weights are a seeded initialisation.

    Inference tests need a checkpoint that fits the store, not a good one:
    this skips training.  Targets are standardised to mean 0, std 1 (or the
    label's own statistics when the store has it); validation RMSE is recorded
    as 0.1 per target so point-estimate uncertainties are defined.
    """
    import torch

    from .kinds import get_kind
    from .models import Checkpoint, Normalization, TargetInfo
    from .models.domain import TrainingDomain

    torch.manual_seed(seed)
    entry = get_kind(kind)
    section = entry.settings.model_validate({"name": kind, "kind": kind, "targets": targets,
                                             "width": width, **settings})
    full = entry.network_config(section, store.bands)
    model = entry.build(full)
    infos = []
    for name in targets:
        values = (store.read_column(f"labels/{name}") if name in store.label_names
                  else np.zeros(2))
        mean, std = float(np.nanmean(values)), float(np.nanstd(values) or 1.0)
        infos.append(TargetInfo(name, "", mean, std))
    sample = store.read(0, min(store.n_objects, 512), labels=False, photometry=False).images
    assert sample is not None
    return Checkpoint(kind=kind, config=full, bands=list(store.bands),
                      image_size=[store.layout.height, store.layout.width],
                      normalization=Normalization(tuple(0.05 for _ in store.bands)),
                      targets=infos, state_dict=model.state_dict(),
                      metrics={"val": {f"rmse_{t}": 0.1 for t in targets}},
                      provenance={"seeded": seed},
                      domain=TrainingDomain.fit(sample, store.bands, store.attrs).to_dict())


LINE_LABELS = ("flux_nii", "flux_halpha", "flux_oiii", "flux_hbeta")


def _label_columns(index: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Labels with known structure for objects ``index``: redshift, metallicity, BPT lines."""
    rng = np.random.default_rng([seed, int(index[0]) if len(index) else 0])
    n = len(index)
    z = rng.uniform(0.02, 0.38, n)
    metallicity = np.where(rng.random(n) < 0.1, np.nan, rng.normal(8.7, 0.15, n))
    halpha = rng.lognormal(3.0, 0.5, n)
    return {"redshift": z.astype(np.float32), "metallicity": metallicity.astype(np.float32),
            "flux_halpha": halpha.astype(np.float32),
            "flux_nii": (halpha * 10 ** rng.normal(-0.4, 0.2, n)).astype(np.float32),
            "flux_hbeta": (halpha / 2.86).astype(np.float32),
            "flux_oiii": (halpha / 2.86 * 10 ** rng.normal(-0.2, 0.4, n)).astype(np.float32)}


def label_store(url: str, n: int, *, seed: int = 0, chunk: int = 65_536,
                storage_options: dict | None = None) -> SurveyStore:
    """A store of ``n`` objects with 1x1-pixel images and :func:`_label_columns` labels.

    For statistics tests and benchmarks that need labels for millions of objects
    and no pixels.
    """
    names = tuple(_label_columns(np.arange(1), seed))
    spec = StoreSpec(n_objects=n, bands=("r",), height=1, width=1, labels=names,
                     chunk_objects=chunk, survey="labels-only")
    create_store(url, spec, storage_options=storage_options, provenance={"generator": "labels"})
    writer = StoreWriter(url, storage_options)
    for start in range(0, n, spec.write_unit):
        index = np.arange(start, min(start + spec.write_unit, n))
        rng = np.random.default_rng([seed, start, 1])
        writer.write(CutoutBatch(
            start=start, object_id=index.astype(np.int64), ra=np.zeros(len(index)),
            dec=np.zeros(len(index)), images=np.ones((len(index), 1, 1, 1), np.float32),
            photometry={"r": (10 ** (-0.4 * (rng.uniform(16, 23, len(index)) - 22.5)))
                        .astype(np.float32)},
            labels=_label_columns(index, seed)))
    writer.finalize()
    return open_store(url, storage_options)


def _synthetic_flags(start: int, n: int, every: int | None) -> np.ndarray:
    from .flags import Flag

    rows = np.arange(start, start + n)
    if not every:
        return np.zeros(n, np.int32)
    return np.where(rows % every == 0, np.int32(Flag.OUT_OF_DISTRIBUTION), np.int32(0))


def synthetic_catalog(url: str, store: SurveyStore, *, rows_per_part: int = 4096,
                      n_features: int = 64, k: int = 4, pdf_scale: float | None = 1.0,
                      z_error: float = 0.02, n_bins: int = 180, seed: int = 0,
                      ood_every: int | None = None, overconfident_above: float | None = None,
                      storage_options: dict | None = None) -> None:
    """Write a catalog for ``store`` the way ``surveyproc infer`` would, without images.

    Its models' kinds are ``synthetic_*``, registered nowhere: the catalog has
    the generic columns (point estimates, PDFs, sparse activations) only.

    Point estimates are truth + N(0, ``z_error`` (1 + z)) for redshift and
    truth + N(0, 0.05) for metallicity.  With ``pdf_scale``, each galaxy gets
    a Gaussian redshift PDF centred on its estimate with width ``pdf_scale``
    times the true error: 1 is calibrated, < 1 over-confident, > 1
    under-confident.  Sparse activations: k of ``n_features`` features, the
    first of which tracks metallicity.  With ``ood_every``, objects whose row is a
    multiple of it carry the OUT_OF_DISTRIBUTION flag.  With ``overconfident_above``,
    galaxies whose true redshift exceeds it get PDFs three times too narrow (a
    miscalibrated corner of the survey).
    """
    import pyarrow as pa

    from .catalog import CatalogSchema, CatalogWriter, ModelColumns
    from .catalog.columns import act_idx_column, act_val_column
    from .catalog.schema import list_column
    from .kinds.columns import density_outputs
    from .models.grid import Grid

    grid = Grid(low=0.0, high=0.4, n_bins=n_bins)
    models = [ModelColumns("sparse", "s", "synthetic_sparse", ("metallicity",), ("dex",),
                           "validation_rmse",
                           k=k, spread=(0.05,), n_features=n_features)]
    if pdf_scale is not None:
        models.append(ModelColumns("photoz", "p", "synthetic_pdf", ("redshift",), ("",), "pdf",
                                   grid=grid))
    else:
        models.append(ModelColumns("zpoint", "p", "synthetic_point", ("redshift",), ("",),
                                   "validation_rmse", spread=(z_error,)))
    shards = store.plan_shards(objects_per_shard=rows_per_part)
    schema = CatalogSchema(models, {"store": {"url": store.url, "n_objects": store.n_objects},
                                    "shards": {"count": len(shards),
                                               "objects_per_shard": rows_per_part}})
    writer = CatalogWriter(url, storage_options)
    writer.prepare(schema.describe(), overwrite=True)
    arrow = schema.arrow()
    centres = grid.centres_array()
    for shard in shards:
        batch = store.read(shard.start, shard.stop, images=False, photometry=False)
        n = len(batch)
        rng = np.random.default_rng([seed, shard.start])
        z = batch.labels["redshift"].astype(np.float64)
        sigma = z_error * (1 + z)
        z_hat = z + rng.normal(0, 1, n) * sigma
        metallicity = batch.labels["metallicity"].astype(np.float64)
        m_hat = np.where(np.isfinite(metallicity), metallicity, 8.7) + rng.normal(0, 0.05, n)
        # activations: feature 0 grows with metallicity, the others are random
        # k - 1 distinct random features out of 1 .. F-1: a random start and k - 1 steps
        # whose sum stays below F - 1 (vectorised: millions of rows in seconds)
        steps = rng.integers(1, max(2, (n_features - 1) // k), (n, k - 1))
        start = rng.integers(0, n_features - 1, (n, 1))
        idx = 1 + (start + np.cumsum(steps, axis=1) - steps[:, :1]) % (n_features - 1)
        idx = np.concatenate([np.zeros((n, 1), np.int64), idx], axis=1)
        val = rng.uniform(0.5, 3.0, (n, k))
        val[:, 0] = np.clip(np.nan_to_num(metallicity - 8.2, nan=0.5) * 4, 0.01, None)
        columns: dict = {
            "object_id": batch.object_id, "ra": batch.ra, "dec": batch.dec,
            "flags": _synthetic_flags(shard.start, n, ood_every),
            "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), ["t"]),
            "model_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)),
                                                       [schema.model_id]),
            **_point_stats("metallicity", m_hat, np.full(n, 0.05)),
            act_idx_column(): list_column(idx.astype(np.int16)),
            act_val_column(): list_column(val.astype(np.float32))}
        if pdf_scale is not None:
            width = pdf_scale * sigma
            if overconfident_above is not None:
                width = np.where(z > overconfident_above, width / 3, width)
            pdf = np.exp(-0.5 * ((centres[None] - z_hat[:, None]) / width[:, None]) ** 2)
            pdf /= pdf.sum(axis=1, keepdims=True) * grid.width
            outputs = density_outputs(pdf, "redshift", grid)
            outputs["redshift_pdf"] = list_column(outputs["redshift_pdf"])
            columns.update(outputs)
        else:
            columns.update(_point_stats("redshift", z_hat, sigma))
        columns = {name: (value.astype(np.float32) if isinstance(value, np.ndarray)
                          and value.dtype == np.float64 and name not in ("ra", "dec")
                          else value) for name, value in columns.items()}
        writer.commit(shard, pa.Table.from_pydict(columns, schema=arrow), "t")
    writer.finish(len(shards), store.n_objects)


def _point_stats(target: str, estimate: np.ndarray, sigma: np.ndarray) -> dict[str, np.ndarray]:
    """``<t>_mean/std/q16/q50/q84`` of a Gaussian estimate (q16/q84 at +-1 sigma)."""
    from .catalog.columns import STATS, stat_column

    values = {"mean": estimate, "std": sigma, "q16": estimate - sigma, "q50": estimate,
              "q84": estimate + sigma}
    return {stat_column(target, s): values[s] for s in STATS}


def local_dependence_table(n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A table with known local dependences for the local independence tests: a latent
    that knows ``a`` only (as a and a^3); target y = a + q_direct / 2 + c / 2 + noise;
    ``q_confounded`` depends on y only through ``c``; ``q_none`` not at all.  Every 50th
    y is unknown (NaN)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, n)
    c, q_direct, q_none = rng.normal(size=(3, n))
    values = {"y": a + 0.5 * q_direct + 0.5 * c + 0.1 * rng.normal(size=n),
              "q_direct": q_direct, "q_none": q_none,
              "q_confounded": c + 0.3 * rng.normal(size=n), "c": c}
    values["y"][::50] = np.nan
    return np.stack([a, a ** 3], axis=1), values
