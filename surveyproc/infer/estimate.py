"""Every model of a run applied to one batch of pixels: read once, infer many.

The estimator turns raw cutouts into catalog columns; each model's kind says
how its outputs become columns.  Models that share an
input normalisation share the normalised tensor; on a GPU the pixels move
once, models run under ``torch.inference_mode`` with bf16 autocast and
channels_last, and only the small outputs come back.  On a CPU the models
use the threads the actor was given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..catalog.schema import ModelColumns
from ..flags import Flag
from ..kinds import ModelKind, build_network, get_kind
from ..models.checkpoint import Checkpoint
from ..models.preprocess import Normalization

__all__ = ["Estimator", "LoadedModel", "model_columns", "nonfinite_rows", "pixel_flags"]


def model_columns(name: str, checkpoint: Checkpoint) -> ModelColumns:
    """The catalog columns ``checkpoint`` fills, as its kind describes them."""
    return get_kind(checkpoint.kind).columns(name, checkpoint)


@dataclass
class LoadedModel:
    """A model ready to run, with the columns it fills."""

    columns: ModelColumns
    checkpoint: Checkpoint
    module: nn.Module
    kind: ModelKind


def nonfinite_rows(images: np.ndarray) -> np.ndarray:
    """True for each cutout holding a NaN or infinite pixel."""
    return ~np.isfinite(images).reshape(len(images), -1).all(axis=1)


def pixel_flags(bad: np.ndarray, store_flags: np.ndarray) -> np.ndarray:
    """Store flags plus NAN_PIXELS where ``bad`` rows hold non-finite pixels that the store's
    flags (off the image edge, no data) do not already explain."""
    explained = (store_flags & (Flag.OFF_EDGE | Flag.NO_DATA)) != 0
    return store_flags | np.where(bad & ~explained, np.int32(Flag.NAN_PIXELS), np.int32(0))


class Estimator:
    """Apply ``models`` to batches of raw cutouts on ``device``."""

    def __init__(self, checkpoints: list[tuple[ModelColumns, Checkpoint]],
                 device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.models = []
        for columns, checkpoint in checkpoints:
            module = build_network(checkpoint).to(self.device)
            if self.cuda:
                module = module.to(memory_format=torch.channels_last)
            self.models.append(LoadedModel(columns, checkpoint, module,
                                           get_kind(checkpoint.kind)))
        self._norms: dict[tuple[float, ...], Normalization] = {
            m.checkpoint.normalization.scale: m.checkpoint.normalization for m in self.models}

    def warm_up(self, bands: int, height: int, width: int, n: int = 16) -> None:
        """Run a small batch of zeros once, so that one-time costs (oneDNN primitives,
        cuDNN autotuning, allocator growth) are paid at start-up, not in the first shard."""
        self(np.zeros((n, bands, height, width), dtype=np.float32))

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Columns (1-D, or 2-D for list columns) of every model for ``images`` (n, b, h, w)."""
        pixels = torch.from_numpy(np.ascontiguousarray(images))
        if self.cuda:
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        inputs = {}
        for scale, norm in self._norms.items():
            x = norm.apply(pixels)
            inputs[scale] = x.contiguous(memory_format=torch.channels_last) if self.cuda else x
        out: dict[str, np.ndarray] = {}
        for model in self.models:
            x = inputs[model.checkpoint.normalization.scale]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
                out.update(model.kind.infer(model.module, x, model.columns, model.checkpoint))
        return out
