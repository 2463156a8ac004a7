"""Kind ``translator`` (Ruan, Lin et al.; physics-aware follow-up): survey A's cutouts ->
survey B's, learnt from a cross-matched pair of stores.

The network and both objectives live in :mod:`surveyproc.models.translation`; this module
says how a job file asks for one (``target_store``: survey B, the same objects in the same
order; ``loss``: ``pixel``, the baseline, or ``gradient``, log-flux gradients weighted by
a normalizing flow), what training reports (aperture magnitudes and colours of the
translation against B's, per band) and how a batch becomes B-like cutouts (B's sky noise
emulated where asked).  A translator makes a store, not catalog columns: ``surveyproc
translate JOB`` writes the translated survey, which ``surveyproc infer`` then reads like
any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, cast

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from ..catalog.schema import ModelColumns
from ..errors import InvalidParameterError
from ..models.background import aperture_mask
from ..models.checkpoint import Checkpoint, TargetInfo
from ..models.translation import Translator, emulate_noise
from .base import ModelKind, ModelSettings
from .registry import register_kind

__all__ = ["TranslatorKind", "TranslatorSettings", "TranslatorTask"]

_LN10 = float(np.log(10.0))


class TranslatorSettings(ModelSettings):
    """A U-Net from the job's store (survey A) to ``target_store`` (survey B)."""

    targets: list[str] = Field(default_factory=list, max_length=0,
                               description="None: a translator learns survey B's cutouts.")
    target_store: str = Field(description="Survey B: a store of the same objects in the same "
                              "order (a cross-matched pair), read with the job's store "
                              "storage options; its cutouts are what the model learns.")
    loss: str = Field("gradient", pattern="^(pixel|gradient)$", description="pixel: mean "
                      "squared error of asinh-stretched pixels (the baseline); gradient: "
                      "log-flux gradients along x, y and the bands, each weighted by a "
                      "normalizing flow's likelihood (physics-aware).")
    width: int = Field(32, ge=4, multiple_of=4, description="Channels of the U-Net's first "
                       "level.")
    depth: int = Field(2, ge=1, le=4, description="Down-sampling levels of the U-Net (B's "
                       "cutout side must divide by 2^depth).")
    anchor: float = Field(1.0, ge=0.0, description="gradient loss: weight of the pixel term "
                          "that fixes the level gradients are blind to.")
    sample: int = Field(8192, ge=64, description="gradient loss: gradient elements scored "
                        "per step.")
    scales: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [1, 2, 4], min_length=1, description=
        "gradient loss: the gradients are taken on the stretched cutouts averaged over s x s "
        "pixels for each s listed (e.g. [1, 2, 4]: colours over a galaxy's core as well as "
        "per pixel), each scale scored alike.")
    flow_transforms: int = Field(2, ge=1, description="gradient loss: spline transforms of "
                                 "the weighting flow.")
    flow_hidden: int = Field(32, ge=4, description="gradient loss: hidden units of the flow.")
    noise: bool = Field(True, description="Add survey B's sky noise to translated cutouts "
                        "(they then look observed, as a model trained on B expects).")
    seed: int = Field(0, ge=0, description="Seed of the emulated noise (reproducible).")

    @field_validator("scales")
    @classmethod
    def _distinct_scales(cls, scales: list[int]) -> list[int]:
        if len(set(scales)) != len(scales):
            msg = f"scales must be distinct, got {scales}"
            raise ValueError(msg)
        return scales


def aperture_magnitudes(flux: np.ndarray, softening: Sequence[float]) -> np.ndarray:
    """(n, bands) asinh magnitudes (offset free) of the flux in the central aperture,
    softened at the aperture's sky noise; NaN pixels count as zero.

    >>> flux = np.zeros((1, 1, 8, 8), np.float32)
    >>> float(aperture_magnitudes(flux, [1.0])[0, 0])
    -0.0
    """
    mask = aperture_mask(*flux.shape[-2:])
    total = np.nansum(flux[:, :, mask], axis=2)
    soft = np.asarray(softening, dtype=np.float64) * np.sqrt(mask.sum())
    return -2.5 / _LN10 * np.arcsinh(total / (2.0 * soft[None, :]))


class TranslatorTask:
    """The translator's own loss (see :class:`Translator`); predictions and truths are
    aperture magnitudes, so evaluation keeps a few numbers per galaxy, not cutouts."""

    def __init__(self, bands: Sequence[str], softening: Sequence[float]) -> None:
        self.bands, self.softening = list(bands), list(softening)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return model(x, y)

    def predict(self, model: nn.Module, x: torch.Tensor) -> np.ndarray:
        flux = cast(Translator, model).flux(x).float().cpu().numpy()
        return aperture_magnitudes(flux, self.softening)

    def truth(self, y: torch.Tensor) -> np.ndarray:
        return aperture_magnitudes(y.float().numpy(), self.softening)

    def metrics(self, predictions: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """RMSE of aperture magnitudes per band and of adjacent colours (mean over
        pairs): how well the translation keeps fluxes and the SED's shape."""
        error = predictions - y
        out = {f"mag_rmse_{band}": float(np.sqrt(np.mean(error[:, j] ** 2)))
               for j, band in enumerate(self.bands)}
        if len(self.bands) > 1:
            colours = error[:, 1:] - error[:, :-1]
            out["colour_rmse"] = float(np.mean(np.sqrt(np.mean(colours ** 2, axis=0))))
        return out


@register_kind
class TranslatorKind(ModelKind):
    """Survey A -> survey B cutouts; written as a store by ``surveyproc translate``."""

    name = "translator"
    description = "U-Net from one survey's cutouts to another's (pixel or flow-weighted " \
                  "log-flux-gradient loss); makes a translated store"
    settings = TranslatorSettings
    writes_catalog = False

    def network_config(self, settings: ModelSettings, bands: Sequence[str]) -> dict[str, Any]:
        config = super().network_config(settings, bands)
        config.pop("target_store")  # where B was read is provenance; its layout goes in "pair"
        return config

    def paired_store(self, settings: ModelSettings) -> str | None:
        return cast(TranslatorSettings, settings).target_store

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        pair, (_, height, width) = config["pair"], config["image_shape"]
        upscale = int(pair["height"]) // int(height)
        if upscale < 1 or upscale * height != pair["height"] or upscale * width != pair["width"]:
            msg = (f"the target survey's {pair['height']}x{pair['width']} cutouts are not a "
                   f"whole multiple of the source's {height}x{width}")
            raise InvalidParameterError(msg)
        if pair["height"] % 2 ** config["depth"] or pair["width"] % 2 ** config["depth"]:
            msg = (f"the target survey's {pair['height']}x{pair['width']} cutouts must divide "
                   f"by 2^depth = {2 ** config['depth']}; lower depth")
            raise InvalidParameterError(msg)
        scales = config.get("scales", [1])  # checkpoints from before scales: pixels only
        coarsest = max(scales)
        if config["loss"] == "gradient" and 2 * coarsest > min(pair["height"], pair["width"]):
            msg = (f"gradient loss scale {coarsest} leaves no spatial gradient in the target "
                   f"survey's {pair['height']}x{pair['width']} cutouts; use scales up to "
                   f"{min(pair['height'], pair['width']) // 2}")
            raise InvalidParameterError(msg)
        return Translator(config["in_bands"], len(pair["bands"]), pair["noise"],
                          input_scale=config.get("input_scale"), loss=config["loss"],
                          width=config["width"], depth=config["depth"], upscale=upscale,
                          anchor=config["anchor"], sample=config["sample"],
                          transforms=config["flow_transforms"], hidden=config["flow_hidden"],
                          scales=scales)

    def task(self, config: Mapping[str, Any], targets: list[TargetInfo]) -> TranslatorTask:
        return TranslatorTask(config["pair"]["bands"], config["pair"]["noise"])

    def columns(self, name: str, checkpoint: Checkpoint) -> ModelColumns:
        msg = (f"model {name} is an image translator: it makes a store, not catalog columns; "
               "run 'surveyproc translate JOB.yaml', then infer on the translated store")
        raise InvalidParameterError(msg)

    def translate(self, module: nn.Module, x: torch.Tensor, checkpoint: Checkpoint,
                  start: int) -> np.ndarray:
        config = checkpoint.config
        flux = cast(Translator, module).flux(x).float().cpu().numpy()
        if not config["noise"]:
            return flux
        return emulate_noise(flux, config["pair"]["noise"], int(config["seed"]), first=start)
