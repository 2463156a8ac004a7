"""What a network reads from a store: the cutouts, or the photometry alone.

A model's ``inputs`` setting (kinds that offer it) picks its input:

- ``images``: the normalised cutouts (:class:`~.preprocess.Normalization`), read by a
  ResNet-18;
- ``photometry``: per band an asinh magnitude of the store's ``photometry/<band>`` flux,
  the colours of adjacent bands and, where the store has ``photometry_error/<band>``,
  each magnitude's error, standardised with the training split's mean and spread
  (:class:`PhotometryInput`), read by an MLP (:class:`PhotometryMLP`).  A photometry-only
  store (a spectroscopic sample's magnitudes) trains and runs such models.
- ``both``: the two side by side (:class:`CombinedInput`): one flat row per galaxy, the
  normalised pixels then the photometric features, which :class:`ImagesAndPhotometry`
  splits again into a ResNet-18 and an MLP whose features it joins.  One tensor per
  galaxy keeps every path that moves a model's input (shuffling, data-parallel
  training, pinned copies to a GPU) as it is for a single input.

Both inputs turn a store batch's raw arrays into the network's tensor in two steps,
``raw`` (the arrays kept per object while batches are shuffled) then ``apply``, so
training streams and inference share one code path whatever the input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from ..errors import InvalidParameterError
from .preprocess import Normalization
from .resnet import ResNet18

__all__ = ["INPUT_SOURCES", "CombinedInput", "ImageInput", "ImagesAndPhotometry",
           "ModelInput", "PhotometryInput", "PhotometryMLP", "build_trunk", "input_source",
           "model_input"]

INPUT_SOURCES = ("images", "photometry", "both")
InputSource = Literal["images", "photometry", "both"]
#: AB zero point of the stores' nanomaggies (``store.layout.ZERO_POINT``; models sit below
#: the store layer and keep their own copy, which the domain's magnitudes use too).
ZERO_POINT = 22.5
_POGSON = 2.5 / np.log(10.0)
#: Softening of the asinh magnitudes without errors: this fraction of the band's median flux
#: (about 7.5 mag fainter than the typical object, so the magnitudes are logarithmic for all
#: but the faintest and stay finite at zero or negative flux).
_SOFTENING_FRACTION = 1e-3
#: Magnitude errors are clipped here (an undetected band says "faint", not "infinitely
#: uncertain").
_MAX_MAG_ERROR = 2.0


def input_source(config: Mapping[str, Any]) -> InputSource:
    """A network config's input (``images`` where the kind offers no choice; a kind whose
    ``inputs`` setting is not one of these names, mi_decomposition's list of two, reads
    cutouts)."""
    source = config.get("inputs", "images")
    if not isinstance(source, str):
        return "images"
    if source not in INPUT_SOURCES:
        msg = f"unknown model input {source!r}; one of {', '.join(INPUT_SOURCES)}"
        raise InvalidParameterError(msg)
    return cast(InputSource, source)


@dataclass(frozen=True)
class ImageInput:
    """Cutouts through the arcsinh stretch of :class:`Normalization`."""

    normalization: Normalization
    reads_images = True
    reads_photometry = False
    photometry_bands: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[Any, ...]:
        """Models with equal keys share one prepared input."""
        return ("images", self.normalization.scale)

    def raw(self, images: np.ndarray | None, photometry: Mapping[str, np.ndarray],
            errors: Mapping[str, np.ndarray]) -> np.ndarray:
        if images is None:
            msg = "this model reads images but the batch has none (a photometry-only store?)"
            raise InvalidParameterError(msg)
        return images

    def apply(self, raw: np.ndarray) -> torch.Tensor:
        return self.normalization.apply(raw)

    def parts(self, raw: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Raw rows' cutouts and photometry (what training fits the input on): cutouts."""
        return raw, None


@dataclass(frozen=True)
class PhotometryInput:
    """Fluxes (nanomaggies) -> standardised asinh magnitudes, colours and magnitude errors.

    Examples
    --------
    >>> flux = np.array([[1.0, 2.0], [10.0, 30.0], [100.0, 50.0]])
    >>> net_input = PhotometryInput.fit(np.stack([flux, np.full_like(flux, np.nan)], 1),
    ...                                 ("g", "r"))
    >>> net_input.n_features, net_input.errors
    (3, False)
    >>> x = net_input.apply(np.stack([flux, np.full_like(flux, np.nan)], 1))
    >>> [round(float(v), 3) for v in x.mean(0)]
    [0.0, 0.0, 0.0]
    """

    bands: tuple[str, ...]
    softening: tuple[float, ...]
    errors: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    reads_images = False
    reads_photometry = True

    @staticmethod
    def feature_count(n_bands: int, errors: bool) -> int:
        """Magnitudes, adjacent colours and (with errors) magnitude errors."""
        return n_bands + (n_bands - 1) + (n_bands if errors else 0)

    @property
    def n_features(self) -> int:
        return self.feature_count(len(self.bands), self.errors)

    @property
    def photometry_bands(self) -> tuple[str, ...]:
        return self.bands

    @property
    def key(self) -> tuple[Any, ...]:
        return ("photometry", self.bands, self.softening, self.errors, self.mean, self.std)

    def raw(self, images: np.ndarray | None, photometry: Mapping[str, np.ndarray],
            errors: Mapping[str, np.ndarray]) -> np.ndarray:
        """(n, 2, bands) fluxes and their errors (NaN where the store has none)."""
        missing = [b for b in self.bands if b not in photometry]
        if missing:
            msg = f"this model reads the photometry of {', '.join(missing)}, which the batch lacks"
            raise InvalidParameterError(msg)
        flux = np.stack([np.asarray(photometry[b], dtype=np.float64) for b in self.bands], 1)
        error = np.stack([np.asarray(errors[b], dtype=np.float64) if b in errors
                          else np.full(len(flux), np.nan) for b in self.bands], 1)
        return np.stack([flux, error], 1)

    @staticmethod
    def features(raw: np.ndarray, softening: Sequence[float], errors: bool) -> np.ndarray:
        """(n, features) unstandardised features of (n, 2, bands) raw rows (NaN = unknown)."""
        flux, error = raw[:, 0], raw[:, 1]
        b = np.asarray(softening, dtype=np.float64)[None, :]
        mags = ZERO_POINT - _POGSON * (np.arcsinh(flux / (2 * b)) + np.log(b))
        parts = [mags, mags[:, :-1] - mags[:, 1:]]
        if errors:
            with np.errstate(invalid="ignore"):
                mag_error = _POGSON * error / np.sqrt(flux ** 2 + 4 * b ** 2)
            parts.append(np.minimum(mag_error, _MAX_MAG_ERROR))
        return np.concatenate(parts, axis=1)

    @classmethod
    def fit(cls, raw: np.ndarray, bands: Sequence[str]) -> PhotometryInput:
        """Softening, error use and standardisation from raw training rows: errors are
        used when every band has some."""
        flux, error = raw[:, 0], raw[:, 1]
        errors = bool(np.isfinite(error).any(axis=0).all())
        softening = []
        for j in range(flux.shape[1]):
            known = np.isfinite(error[:, j]) & (error[:, j] > 0) if errors else None
            if known is not None and known.any():
                value = float(np.median(error[known, j]))
            else:
                positive = flux[np.isfinite(flux[:, j]) & (flux[:, j] > 0), j]
                value = _SOFTENING_FRACTION * float(np.median(positive)) if positive.size \
                    else 1e-3
            softening.append(max(value, 1e-6))
        features = cls.features(raw, softening, errors)
        with np.errstate(invalid="ignore"):
            mean = np.nan_to_num(np.nanmean(features, axis=0))
            std = np.nan_to_num(np.nanstd(features, axis=0), nan=1.0)
        std = np.where(std > 0, std, 1.0)
        return cls(tuple(bands), tuple(softening), errors,
                   tuple(float(v) for v in mean), tuple(float(v) for v in std))

    def apply(self, raw: np.ndarray) -> torch.Tensor:
        """(n, features) float32 network input; unknown values are 0 (the training mean)."""
        z = (self.features(raw, self.softening, self.errors) - np.asarray(self.mean)) \
            / np.asarray(self.std)
        return torch.from_numpy(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
                                .astype(np.float32))

    def parts(self, raw: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Raw rows' cutouts and photometry: photometry (n, 2, bands) alone."""
        return None, raw

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PhotometryInput:
        return cls(tuple(values["bands"]), tuple(values["softening"]), bool(values["errors"]),
                   tuple(values["mean"]), tuple(values["std"]))


@dataclass(frozen=True)
class CombinedInput:
    """Cutouts and photometry as one flat row per galaxy: ``bands x h x w`` normalised
    pixels, then the standardised photometric features.

    >>> images = np.ones((2, 1, 2, 2), dtype=np.float32)
    >>> flux = {"g": np.array([1.0, 2.0]), "r": np.array([2.0, 4.0])}
    >>> photometry = PhotometryInput(("g", "r"), (0.01, 0.01), False, (0.0,) * 3, (1.0,) * 3)
    >>> both = CombinedInput(ImageInput(Normalization((1.0,))), photometry, (1, 2, 2))
    >>> both.apply(both.raw(images, flux, {})).shape  # 4 pixels + 2 magnitudes + 1 colour
    torch.Size([2, 7])
    """

    images: ImageInput
    photometry: PhotometryInput
    shape: tuple[int, int, int]  # bands, height, width of the cutouts
    reads_images = True
    reads_photometry = True

    @property
    def key(self) -> tuple[Any, ...]:
        return ("both", self.images.key, self.photometry.key, self.shape)

    @property
    def photometry_bands(self) -> tuple[str, ...]:
        return self.photometry.bands

    @property
    def pixels(self) -> int:
        return int(np.prod(self.shape))

    def raw(self, images: np.ndarray | None, photometry: Mapping[str, np.ndarray],
            errors: Mapping[str, np.ndarray]) -> np.ndarray:
        """(n, pixels + 2 x bands) float32: the raw pixels, then fluxes and their errors."""
        pixels = self.images.raw(images, photometry, errors)
        fluxes = self.photometry.raw(images, photometry, errors)
        return np.concatenate([pixels.reshape(len(pixels), -1).astype(np.float32, copy=False),
                               fluxes.reshape(len(fluxes), -1).astype(np.float32)], axis=1)

    def parts(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A :meth:`raw` row's cutouts (n, bands, h, w) and photometry (n, 2, bands)."""
        n = len(raw)
        return (raw[:, :self.pixels].reshape(n, *self.shape),
                raw[:, self.pixels:].astype(np.float64).reshape(n, 2, -1))

    def apply(self, raw: np.ndarray) -> torch.Tensor:
        pixels, fluxes = self.parts(raw)
        return torch.cat([self.images.apply(pixels).reshape(len(raw), -1),
                          self.photometry.apply(fluxes)], dim=1)


#: What a network reads, one of the three inputs.
ModelInput = ImageInput | PhotometryInput | CombinedInput


class PhotometryMLP(nn.Module):
    """Photometric features -> ``out_features`` (ReLU MLP with LayerNorm; the trunk of
    photometry models, in place of the ResNet-18 of image models).

    >>> PhotometryMLP(9, hidden=32)(torch.zeros(4, 9)).shape
    torch.Size([4, 32])
    """

    def __init__(self, in_features: int, hidden: int = 256, depth: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        self.net = nn.Sequential(*layers)
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ImagesAndPhotometry(nn.Module):
    """The trunk of ``inputs: both``: a ResNet-18 on the pixels of a :class:`CombinedInput`
    row and an MLP on its photometric features, their features joined.

    >>> trunk = ImagesAndPhotometry((2, 8, 8), 5, width=8, hidden=16)
    >>> trunk(torch.zeros(3, 2 * 8 * 8 + 5)).shape == (3, trunk.out_features)
    True
    """

    def __init__(self, shape: Sequence[int], n_features: int, width: int = 64,
                 hidden: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        self.shape = tuple(int(v) for v in shape)
        self.pixels = int(np.prod(self.shape))
        self.images = ResNet18(self.shape[0], width)
        self.photometry = PhotometryMLP(n_features, hidden, dropout=dropout)
        self.out_features = int(self.images.out_features) + hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cutouts = x[:, :self.pixels].reshape(len(x), *self.shape)
        return torch.cat([self.images(cutouts), self.photometry(x[:, self.pixels:])], dim=1)


def model_input(config: Mapping[str, Any], normalization: Normalization) -> ModelInput:
    """What a network of ``config`` reads: cutouts through ``normalization``, its
    standardised photometry (kept in the config), or both (``image_shape`` in the config)."""
    source = input_source(config)
    if source == "images":
        return ImageInput(normalization)
    photometry = PhotometryInput.from_dict(config["photometry_input"])
    if source == "photometry":
        return photometry
    shape = tuple(int(v) for v in config["image_shape"])
    return CombinedInput(ImageInput(normalization), photometry, (shape[0], shape[1], shape[2]))


def build_trunk(config: Mapping[str, Any]) -> nn.Module:
    """The feature extractor a config's input needs (``out_features`` wide): a ResNet-18 of
    ``width`` for images, an MLP of ``mlp_hidden`` units for photometry, both joined for
    both."""
    source = input_source(config)
    if source == "images":
        return ResNet18(config["in_bands"], config.get("width", 64))
    n_features = PhotometryInput.from_dict(config["photometry_input"]).n_features
    hidden, dropout = int(config.get("mlp_hidden", 256)), float(config.get("dropout", 0.0))
    if source == "photometry":
        return PhotometryMLP(n_features, hidden, dropout=dropout)
    return ImagesAndPhotometry(config["image_shape"], n_features, config.get("width", 64),
                               hidden, dropout)
