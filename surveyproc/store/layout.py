"""The survey store contract: array names, dtypes, attributes, and how a new store is laid out.

A store is a Zarr v3 group.  Every array is chunked along the object axis
only, and every 1-D column shares the images' *write unit* (one chunk, or one
Zarr shard when sharding is on), so that independent workers can each write
whole units without touching a neighbour's object.  This module holds the
rules; :mod:`.create` writes them and :mod:`.validate` checks them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import InvalidParameterError

__all__ = [
    "COMPRESSIONS",
    "FORMAT_VERSION",
    "IMAGE_DTYPES",
    "StoreSpec",
]

#: Version written into new stores; bump when the layout changes incompatibly.
FORMAT_VERSION = 1
#: The pixel unit of every store ingest or the synthetic survey writes, and its AB zero
#: point: calibrated stores can then be compared and models moved between them.
FLUX_UNIT = "nanomaggy"
ZERO_POINT = 22.5
SUPPORTED_FORMAT_VERSIONS = frozenset({1})

IMAGE_DTYPES = ("float16", "float32")
#: Target objects per chunk of the 1-D columns (256 KB per float32 column).
COLUMN_CHUNK = 65536
COMPRESSIONS = ("zstd", "blosc", "none")
#: New stores' image compression: lz4 after a bit shuffle packs survey pixels tighter than
#: zstd does (0.88 against 0.93 of the raw bytes on synthetic cutouts, 0.22 against 0.26
#: on a DECam image) and decodes 2-4 times faster, which a fast model's inference feels
#: (docs/results.md, "The actor loop's profile")
DEFAULT_COMPRESSION: Final = "blosc"

IMAGES = "images"
OBJECT_ID = "object_id"
RA = "ra"
DEC = "dec"
FLAGS = "flags"
PHOTOMETRY = "photometry"
#: Optional 1-sigma errors of the photometry, in the same unit (``photometry_error/<band>``).
PHOTOMETRY_ERROR = "photometry_error"
LABELS = "labels"
#: Optional (N, measures, bands) float32: each cutout's sky, noise and central flux
#: (``surveyproc.models.background.MEASURES``), measured when its pixels were written and
#: chunked like them, so that inference's training-domain check reads them instead of
#: measuring on every run.  Its attribute ``method`` names how they were measured.
PIXEL_MEASURES = "pixel_measures"
#: Group attribute that declares whether the store holds cutouts; a photometry-only store
#: (a spectroscopic catalog's magnitudes, say) sets it false.  Absent means true, as in
#: every store written before photometry-only stores existed.
HAS_IMAGES = "images"
#: Objects per write unit of a photometry-only store (with images, the images' chunking
#: says it).
WRITE_UNIT = "write_unit"

#: 1-D columns every store has, with their required dtype.
REQUIRED_COLUMNS = {OBJECT_ID: "int64", RA: "float64", DEC: "float64"}
#: Optional 1-D columns and their dtype (absent ``flags`` reads as zeros).
OPTIONAL_COLUMNS = {FLAGS: "int32"}
PHOTOMETRY_DTYPE = "float32"
LABEL_DTYPE = "float32"

REQUIRED_ATTRS = ("format_version", "survey", "bands", "pixel_scale", "flux_unit",
                  "zero_points", "provenance")

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        msg = (f"{kind} name {name!r} is not allowed: use letters, digits and '_', "
               "starting with a letter")
        raise InvalidParameterError(msg)


@dataclass(frozen=True)
class StoreSpec:
    """Everything needed to lay out a new, empty store.

    Parameters
    ----------
    n_objects
        Number of galaxies (rows along the object axis).
    bands
        Band names in image-plane order, e.g. ``("g", "r", "i", "z")``.
    height, width
        Cutout size in pixels.
    labels
        Names of the ``labels/<name>`` columns (float32, NaN = unknown).
    photometry
        Whether to create ``photometry/<band>`` columns.
    photometry_errors
        Whether to create ``photometry_error/<band>`` columns (needs ``photometry``).
    images
        Whether the store holds cutouts.  False makes a photometry-only store: no
        ``images`` array, ``height`` and ``width`` are 0 and photometry is required.
    dtype
        ``"float32"`` or ``"float16"`` for images (float16 halves storage and I/O).
    chunk_objects
        Objects per chunk: the unit of reading and of sharding work.
    shard_chunks
        Chunks per Zarr v3 shard (one object-store file), or None for no sharding.
        Object stores prefer few large objects; local disks do not care.
    compression
        ``"blosc"`` (lz4 after a bit shuffle: the default, see
        :data:`DEFAULT_COMPRESSION`), ``"zstd"`` or ``"none"``.
    survey, pixel_scale, flux_unit, zero_points, label_units, label_notes
        Group attributes: survey name, arcsec per pixel, pixel unit, AB zero
        point per band (default 22.5, i.e. nanomaggies), unit of each label
        (a unit only: report axes are labelled with it), and what a label means
        where its name and unit do not say it.
    calibration
        How the pixels were calibrated (``sky_subtracted``, per-band ``noise``
        and ``psf_fwhm``, the input's zero points); ingest fills it in when it
        finishes, the synthetic survey at creation.
    """

    n_objects: int
    bands: tuple[str, ...]
    height: int
    width: int
    labels: tuple[str, ...] = ()
    photometry: bool = True
    photometry_errors: bool = False
    images: bool = True
    dtype: str = "float32"
    chunk_objects: int = 256
    shard_chunks: int | None = None
    compression: str = DEFAULT_COMPRESSION
    survey: str = "unnamed"
    pixel_scale: float = 0.262
    flux_unit: str = FLUX_UNIT
    zero_points: dict[str, float] = field(default_factory=dict)
    label_units: dict[str, str] = field(default_factory=dict)
    label_notes: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", tuple(self.bands))
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.n_objects < 1:
            msg = f"n_objects must be at least 1, got {self.n_objects}"
            raise InvalidParameterError(msg)
        if not self.bands:
            msg = "at least one band is needed"
            raise InvalidParameterError(msg)
        for kind, names in (("band", self.bands), ("label", self.labels)):
            for name in names:
                _check_name(kind, name)
            if len(set(names)) != len(names):
                msg = f"{kind} names must be unique, got {list(names)}"
                raise InvalidParameterError(msg)
        if self.images and (self.height < 1 or self.width < 1):
            msg = f"cutout size must be positive, got {self.height}x{self.width}"
            raise InvalidParameterError(msg)
        if not self.images and (self.height, self.width) != (0, 0):
            msg = (f"a photometry-only store has no cutouts; its size must be 0x0, got "
                   f"{self.height}x{self.width}")
            raise InvalidParameterError(msg)
        if not self.images and not self.photometry:
            msg = "a store without images needs photometry"
            raise InvalidParameterError(msg)
        if self.photometry_errors and not self.photometry:
            msg = "photometry errors need photometry"
            raise InvalidParameterError(msg)
        if self.dtype not in IMAGE_DTYPES:
            msg = f"image dtype must be one of {IMAGE_DTYPES}, got {self.dtype!r}"
            raise InvalidParameterError(msg)
        if self.compression not in COMPRESSIONS:
            msg = f"compression must be one of {COMPRESSIONS}, got {self.compression!r}"
            raise InvalidParameterError(msg)
        if self.chunk_objects < 1:
            msg = f"chunk_objects must be at least 1, got {self.chunk_objects}"
            raise InvalidParameterError(msg)
        if self.shard_chunks is not None and self.shard_chunks < 1:
            msg = f"shard_chunks must be at least 1 or None, got {self.shard_chunks}"
            raise InvalidParameterError(msg)
        if self.pixel_scale <= 0:
            msg = f"pixel_scale must be positive (arcsec/pixel), got {self.pixel_scale}"
            raise InvalidParameterError(msg)
        unknown = set(self.zero_points) - set(self.bands)
        if unknown:
            msg = f"zero_points names bands {sorted(unknown)} that are not in {list(self.bands)}"
            raise InvalidParameterError(msg)

    @property
    def write_unit(self) -> int:
        """Objects per independently writable unit (a chunk, or a shard when sharded)."""
        return self.chunk_objects * (self.shard_chunks or 1)

    @property
    def column_chunk_objects(self) -> int:
        """Objects per chunk of the 1-D columns: a whole number of write units near 65,536."""
        unit = self.write_unit
        return min(self.n_objects, max(unit, -(-COLUMN_CHUNK // unit) * unit))

    def attributes(self, provenance: dict[str, Any]) -> dict[str, Any]:
        """Group attributes for a store laid out from this spec."""
        attributes = {
            "format_version": FORMAT_VERSION,
            "survey": self.survey,
            "bands": list(self.bands),
            "pixel_scale": float(self.pixel_scale),
            "flux_unit": self.flux_unit,
            "zero_points": {b: float(self.zero_points.get(b, ZERO_POINT)) for b in self.bands},
            "label_units": {k: self.label_units.get(k, "") for k in self.labels},
            "label_notes": {k: v for k, v in self.label_notes.items() if k in self.labels},
            "provenance": provenance,
            "complete": False,
            HAS_IMAGES: self.images,
        }
        if not self.images:
            attributes[WRITE_UNIT] = self.write_unit
        if self.calibration is not None:
            attributes["calibration"] = self.calibration
        return attributes


def compressors(name: str) -> tuple[Any, ...] | None:
    """Zarr v3 codec tuple for a compression name."""
    from zarr.codecs import BloscCodec, ZstdCodec

    if name == "zstd":
        return (ZstdCodec(level=3),)
    if name == "blosc":
        return (BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),)
    return None


def compression_name(codecs: tuple[Any, ...]) -> str:
    """Inverse of :func:`compressors` for display: the first codec's short name."""
    if not codecs:
        return "none"
    codec = codecs[0]
    name = type(codec).__name__.removesuffix("Codec").lower()
    cname = getattr(codec, "cname", None)
    return f"{name}({cname.value if hasattr(cname, 'value') else cname})" if cname else name
