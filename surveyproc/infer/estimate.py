"""Every model of a run applied to one batch of pixels: read once, infer many.

The estimator turns raw cutouts into catalog columns.  Models that share an
input normalisation share the normalised tensor; on a GPU the pixels move
once, models run under ``torch.inference_mode`` with bf16 autocast and
channels_last, and only the small outputs come back.  On a CPU the models
use the threads the actor was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..catalog.pdf import GAUSSIAN_Q16, summarize_pdfs
from ..catalog.schema import ModelColumns
from ..flags import Flag
from ..models.checkpoint import Checkpoint
from ..models.density import BinnedDensity
from ..models.preprocess import Normalization

__all__ = ["Estimator", "LoadedModel", "model_columns", "nonfinite_rows", "pixel_flags"]


def model_columns(name: str, checkpoint: Checkpoint, sparse_prefix: str = "") -> ModelColumns:
    """The catalog columns ``checkpoint`` fills, and how their uncertainties are obtained."""
    targets = tuple(t.name for t in checkpoint.targets)
    units = tuple(t.unit for t in checkpoint.targets)
    if checkpoint.task == "density":
        c = checkpoint.config
        grid = {"low": float(c["low"]), "high": float(c["high"]), "n_bins": int(c["n_bins"])}
        return ModelColumns(name, checkpoint.model_id, checkpoint.kind, targets, units, "pdf",
                            grid=grid)
    val = checkpoint.metrics.get("val", {})
    spread = tuple(float(val.get(f"rmse_{t}", float("nan"))) for t in targets)
    k = checkpoint.config.get("k")
    n_features = int(checkpoint.state_dict["head.weight"].shape[1]) if k else None
    return ModelColumns(name, checkpoint.model_id, checkpoint.kind, targets, units,
                        "validation_rmse", k=k, sparse_prefix=sparse_prefix if k else "",
                        spread=spread, n_features=n_features)


@dataclass
class LoadedModel:
    """A model ready to run, with the columns it fills."""

    columns: ModelColumns
    checkpoint: Checkpoint
    module: nn.Module


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
            module = checkpoint.build().to(self.device)
            if self.cuda:
                module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self.models.append(LoadedModel(columns, checkpoint, module))
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
                if model.columns.grid is not None:
                    out.update(self._density(model, x))
                else:
                    out.update(self._regression(model, x))
        return out

    def _regression(self, model: LoadedModel, x: torch.Tensor) -> dict[str, np.ndarray]:
        result: Any = model.module(x)
        prediction = result.prediction.float().cpu().numpy()
        columns = model.columns
        out: dict[str, np.ndarray] = {}
        for j, info in enumerate(model.checkpoint.targets):
            mean = (prediction[:, j] * info.std + info.mean).astype(np.float32)
            spread = np.float32((columns.spread or ())[j] if columns.spread else np.nan)
            out[f"{info.name}_mean"] = mean
            out[f"{info.name}_std"] = np.full_like(mean, spread)
            out[f"{info.name}_q16"] = mean - np.float32(GAUSSIAN_Q16) * spread
            out[f"{info.name}_q50"] = mean
            out[f"{info.name}_q84"] = mean + np.float32(GAUSSIAN_Q16) * spread
        if columns.k is not None:
            out[columns.act_idx] = result.act_idx.cpu().numpy().astype(np.int16)
            out[columns.act_val] = result.act_val.float().cpu().numpy()
        return out

    def _density(self, model: LoadedModel, x: torch.Tensor) -> dict[str, np.ndarray]:
        module = cast(BinnedDensity, model.module)
        logits = module(x).logits.float()
        pdf = (torch.softmax(logits, dim=1) / module.grid.width).cpu().numpy()
        grid = model.columns.grid or {}
        mean, std, (q16, q50, q84) = summarize_pdfs(pdf, grid["low"], grid["high"])
        name = model.columns.targets[0]
        return {f"{name}_mean": mean.astype(np.float32), f"{name}_std": std.astype(np.float32),
                f"{name}_q16": q16.astype(np.float32), f"{name}_q50": q50.astype(np.float32),
                f"{name}_q84": q84.astype(np.float32), f"{name}_pdf": pdf.astype(np.float32)}
