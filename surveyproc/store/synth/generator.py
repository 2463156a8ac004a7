"""Assemble synthetic galaxies into store batches and write a whole synthetic survey.

:func:`generate` turns objects ``[start, stop)`` into a :class:`CutoutBatch`
(images, labels, photometry); :func:`synthesize` lays out a store and writes
it unit by unit on Ray tasks, each task generating and writing its own unit
straight into the store, so the driver never holds more than one unit and
10^6 objects only need more workers, not more memory.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ...errors import InvalidParameterError
from ...fs import is_process_local
from ...ops.ray_runtime import map_units
from ..batch import CutoutBatch
from ..create import StoreWriter, create_store
from ..layout import ZERO_POINT, StoreSpec
from ..open import SurveyStore, open_store
from ..shards import Shard, plan_shards
from .physics import BLOCK, MEDIAN_SEEING, Galaxies, draw_block
from .render import GAIN, component_radii_pixels, render_cutouts
from .scene import Neighbours, draw_neighbours
from .sed import BandFluxes, band_fluxes, emission_lines
from .settings import SynthConfig

__all__ = ["LABEL_UNITS", "SynthConfig", "generate", "synthesize"]

_LINE_UNIT = "1e-17 erg/s/cm2"
#: Labels of a synthetic store and their units (what axes and bins are labelled with).
LABEL_UNITS: dict[str, str] = {
    "redshift": "",
    "log_mstar": "dex Msun",
    "log_sfr": "dex Msun/yr",
    "metallicity": "12+log(O/H)",
    "agn": "",
    "log_mbh": "dex Msun",
    "dust_av": "mag",
    "cos_inclination": "",
    "bulge_fraction": "",
    "half_light_radius": "arcsec",
    **{f"flux_{line}": _LINE_UNIT for line in ("halpha", "hbeta", "nii", "oiii")},
    **{f"flux_{line}_err": _LINE_UNIT for line in ("halpha", "hbeta", "nii", "oiii")},
}
#: What a label means where its name and unit do not say it.
LABEL_NOTES: dict[str, str] = {
    "metallicity": "gas-phase, in the fibre; NaN for AGN or weak lines",
    "agn": "1 = AGN, 0 = not",
    "cos_inclination": "1 = face-on",
    "bulge_fraction": "bulge-to-total stellar mass",
}


@dataclass
class _Block:
    galaxies: Galaxies
    fluxes: BandFluxes
    neighbours: Neighbours
    columns: dict[str, np.ndarray]


def _block_scalars(config: SynthConfig, block: int) -> _Block:
    """Every per-galaxy number of one parameter block (latents, labels, fluxes)."""
    g = _observed(config, draw_block(config.seed, block, config.z_max))
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 2, block]))
    lines = emission_lines(g, rng)
    fluxes = band_fluxes(g, lines, config.bands)
    scale = config.arcsec_per_pixel
    disk_r, bulge_r = component_radii_pixels(g, scale, config.size)
    radius = (1 - g.bulge_fraction) * disk_r + g.bulge_fraction * bulge_r
    aperture = np.pi * (1.5 * radius + g.seeing_arcsec / scale) ** 2  # pixels
    total = fluxes.total
    phot_sigma = g.depth[:, None] * np.sqrt(config.sky_sigma()[None, :] ** 2
                                            * aperture[:, None] + np.maximum(total, 0) / GAIN)
    noise = rng if config.noise_seed is None else np.random.default_rng(
        np.random.SeedSequence([config.noise_seed, 5, block]))
    photometry = total + phot_sigma * noise.standard_normal(total.shape)
    signal_to_noise = {k: lines.measured[k] / lines.error[k] for k in lines.measured}
    measurable = (~g.agn) & (signal_to_noise["halpha"] > 5) & (signal_to_noise["nii"] > 3)
    z_sigma = np.sqrt(0.02**2 + (0.2 / np.maximum(signal_to_noise["nii"], 1.0)) ** 2)
    metallicity = np.where(measurable,
                           g.metallicity_fibre + z_sigma * rng.standard_normal(len(g)), np.nan)
    pos = np.random.default_rng(np.random.SeedSequence([config.seed, 3, block]))
    dec = np.degrees(np.arcsin(pos.uniform(np.sin(np.radians(-3.0)),
                                           np.sin(np.radians(7.0)), len(g))))
    ra = pos.uniform(145.0, 155.0, len(g))
    columns: dict[str, np.ndarray] = {
        "ra": ra,
        "dec": dec,
        "labels/redshift": g.redshift + pos.normal(0.0, 1e-4, len(g)),  # spectroscopic z
        "labels/log_mstar": g.log_mstar,
        "labels/log_sfr": g.log_sfr,
        "labels/metallicity": metallicity,
        "labels/agn": g.agn.astype(float),
        "labels/log_mbh": g.log_mbh,
        "labels/dust_av": g.dust_av,
        "labels/cos_inclination": g.cos_inclination,
        "labels/bulge_fraction": g.bulge_fraction,
        "labels/half_light_radius": radius * scale,
    }
    for line in lines.measured:
        columns[f"labels/flux_{line}"] = lines.measured[line]
        columns[f"labels/flux_{line}_err"] = lines.error[line]
    for j, band in enumerate(config.bands):
        columns[f"photometry/{band}"] = photometry[:, j]
    neighbours = draw_neighbours(config.seed, block, config.size * config.arcsec_per_pixel / 2)
    return _Block(g, fluxes, neighbours, columns)


def _observed(config: SynthConfig, g: Galaxies) -> Galaxies:
    """The galaxies as this survey observes them: its seeing and depth.

    Only the observing conditions change, so two surveys with one seed see the same
    galaxies (a survey pair for image translation)."""
    if config.seeing is None and config.noise_scale == 1.0:
        return g
    return replace(g, seeing_arcsec=g.seeing_arcsec * (config.median_seeing / MEDIAN_SEEING),
                   depth=g.depth * config.noise_scale)


def _blocks(config: SynthConfig, start: int, stop: int) -> _Block:
    """The parameter blocks covering ``[start, stop)``, joined and cut to that range."""
    first, last = start // BLOCK, (stop - 1) // BLOCK
    blocks = [_block_scalars(config, b) for b in range(first, last + 1)]
    rows = slice(start - first * BLOCK, stop - first * BLOCK)

    def cut(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays)[rows]

    return _Block(
        galaxies=Galaxies.concat([b.galaxies for b in blocks]).slice(rows),
        neighbours=Neighbours.concat([b.neighbours for b in blocks]).slice(rows),
        fluxes=BandFluxes(*(cut([getattr(b.fluxes, f) for b in blocks])
                            for f in ("bulge", "disk", "nucleus"))),
        columns={k: cut([b.columns[k] for b in blocks]) for k in blocks[0].columns},
    )


def generate(config: SynthConfig, start: int, stop: int, *, images: bool = True) -> CutoutBatch:
    """Objects ``[start, stop)`` of the synthetic survey.

    ``images=False`` skips drawing pixels (about 100x faster): labels and
    photometry alone, for studies of the catalog-level physics.

    Examples
    --------
    >>> cfg = SynthConfig(n=10, size=16, bands=("g", "r"))
    >>> batch = generate(cfg, 3, 6)
    >>> batch.images.shape, batch.object_id.tolist()
    ((3, 2, 16, 16), [3, 4, 5])
    """
    if not 0 <= start < stop <= config.n:
        msg = f"object range [{start}, {stop}) is outside the survey's [0, {config.n})"
        raise InvalidParameterError(msg)
    block = _blocks(config, start, stop)
    batch = _columns(block, start, stop)
    if images:
        batch.images = _draw(config, block, start)
    return batch


def _columns(block: _Block, start: int, stop: int) -> CutoutBatch:
    cols = block.columns
    return CutoutBatch(
        start=start,
        object_id=np.arange(start, stop, dtype=np.int64),
        ra=cols["ra"],
        dec=cols["dec"],
        photometry={k.split("/", 1)[1]: v.astype(np.float32) for k, v in cols.items()
                    if k.startswith("photometry/")},
        labels={k.split("/", 1)[1]: v.astype(np.float32) for k, v in cols.items()
                if k.startswith("labels/")},
    )


def _draw(config: SynthConfig, block: _Block, start: int) -> np.ndarray:
    return render_cutouts(block.galaxies, block.fluxes, block.neighbours, bands=config.bands,
                          size=config.size,
                          pixel_scale=config.arcsec_per_pixel,
                          sigma_sky=config.sky_sigma(), first_index=start,
                          seed=config.observation_seed)


def _write_unit(config: SynthConfig, writer: StoreWriter, unit: Shard) -> CutoutBatch:
    """Generate one unit, write its pixels, hand back its (small) columns."""
    block = _blocks(config, unit.start, unit.stop)
    writer.write_images(unit.start, _draw(config, block, unit.start))
    return _columns(block, unit.start, unit.stop)


def _calibration(config: SynthConfig) -> dict[str, Any]:
    """The store's calibration record: drawn in sky-subtracted nanomaggies, with the
    generator's median sky noise (depth multiplier 1) and median seeing per band."""
    noise = config.sky_sigma() * config.noise_scale
    return {"input_unit": "nanomaggy (synthetic)",
            "input_zero_points": dict.fromkeys(config.bands, ZERO_POINT), "sky_subtracted": True,
            "sky_method": "drawn without sky", "sky_before_subtraction": dict.fromkeys(
                config.bands, 0.0),
            "noise": {b: float(v) for b, v in zip(config.bands, noise, strict=True)},
            "psf_fwhm": dict.fromkeys(config.bands, config.median_seeing)}


def synthesize(
    url: str,
    config: SynthConfig,
    *,
    storage_options: dict[str, Any] | None = None,
    chunk_objects: int | None = None,
    shard_chunks: int | None = None,
    compression: str | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
    parallel: bool = True,
) -> SurveyStore:
    """Write the synthetic survey ``config`` into a new store at ``url`` and open it.

    Units are generated and written on Ray tasks (an embedded Ray starts if
    none is running) unless ``parallel`` is False or the URL is ``memory://``.
    The layout arguments, when given, override ``config``'s.
    """
    spec = StoreSpec(
        n_objects=config.n, bands=config.bands, height=config.size, width=config.size,
        labels=tuple(LABEL_UNITS), dtype=dtype or config.dtype,
        chunk_objects=chunk_objects or config.chunk,
        shard_chunks=shard_chunks or config.shard_chunks,
        compression=compression or config.compression, survey="synthetic",
        pixel_scale=config.arcsec_per_pixel, label_units=LABEL_UNITS, label_notes=LABEL_NOTES,
        calibration=_calibration(config),
    )
    provenance = {"generator": "surveyproc.store.synth",
                  "synth_config": config.model_dump(mode="json")}
    create_store(url, spec, storage_options=storage_options, provenance=provenance,
                 overwrite=overwrite)
    writer = StoreWriter(url, storage_options)
    units = plan_shards(config.n, spec.write_unit)
    work = functools.partial(_write_unit, config, writer)
    for _, columns in map_units(work, units, weight=len, desc="synth",
                                parallel=parallel and not is_process_local(url)):
        writer.add_columns(columns)
    writer.finalize()
    return open_store(url, storage_options)
