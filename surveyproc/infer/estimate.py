"""Every model of a run applied to one batch of pixels: read once, infer many.

The estimator turns raw cutouts (or photometry, for models that read it: see
:mod:`surveyproc.models.inputs`) into catalog columns; each model's kind says
how its outputs become columns.  Models that share an input (one normalisation,
or one photometry standardisation) share its tensor, made on the host by
:meth:`Estimator.prepare`
(inference calls it on its reader threads, beside the models); on a GPU it
moves once, pinned, models run under ``torch.inference_mode`` with bf16
autocast and channels_last, and only the small outputs come back.  On a CPU
the models use the threads the actor was given.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..catalog.schema import ModelColumns
from ..errors import InvalidParameterError
from ..flags import Flag
from ..kinds import ModelKind, build_network, get_kind
from ..models.checkpoint import Checkpoint
from ..models.inputs import ModelInput
from ..models.targets import TargetSpec, label_columns, resolve_targets, values_from_labels

__all__ = ["Estimator", "LoadedModel", "blank_rows", "merge_flags", "model_columns",
           "pixel_checks"]


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
    #: For a kind that reads its targets' truths: each target's store label (None where
    #: the store has none); None for a kind that reads none.
    truth_specs: list[TargetSpec | None] | None = None


#: Pixels sharing a band's brightest value that make a clipped (saturated) plateau.  Noise
#: makes exact ties of the maximum all but impossible in unsaturated float images.
SATURATION_PLATEAU = 4


def pixel_checks(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(flags, no_signal)`` of each cutout ``(n, bands, h, w)`` from its pixels alone.

    flags: NAN_PIXELS where a pixel is NaN or infinite, EMPTY where every pixel of a band
    is zero, SATURATED where a band's positive maximum is shared by at least
    :data:`SATURATION_PLATEAU` pixels and the band is not flat throughout.  no_signal: no
    pixel finite and non-zero, so no estimate means anything (its row is written with NaN
    estimates).

    >>> from surveyproc.flags import describe
    >>> images = np.ones((4, 2, 3, 3), dtype=np.float32) * np.arange(9).reshape(3, 3)
    >>> images[1, 0, 0, 0] = np.nan
    >>> images[2, 1] = 0.0
    >>> images[3, 0, :2] = 9.0
    >>> flags, no_signal = pixel_checks(images)
    >>> [describe(int(f)) for f in flags], no_signal.tolist()
    ([[], ['NAN_PIXELS'], ['EMPTY'], ['SATURATED']], [False, False, False, False])
    """
    n, bands = images.shape[:2]
    flat = images.reshape(n, bands, -1)
    # Fast path, three passes over the pixels: a band's max and min propagate NaN and
    # infinities, so bands where both are finite hold finite pixels only; the objects with
    # another band (rare) are checked pixel by pixel.
    brightest, faintest = flat.max(axis=2), flat.min(axis=2)
    nonfinite = ~(np.isfinite(brightest) & np.isfinite(faintest)).all(axis=1)
    at_top = (flat == brightest[..., None]).sum(axis=2)
    zero_band = (brightest == 0) & (faintest == 0)
    flags = _flags(nonfinite, zero_band.any(axis=1), at_top, brightest, faintest)
    no_signal = zero_band.all(axis=1)
    odd = np.flatnonzero(nonfinite)
    if len(odd):
        flags[odd], no_signal[odd] = _pixel_checks_exact(flat[odd])
    return flags, no_signal


def _flags(nonfinite: np.ndarray, empty: np.ndarray, at_top: np.ndarray,
           brightest: np.ndarray, faintest: np.ndarray) -> np.ndarray:
    saturated = ((at_top >= SATURATION_PLATEAU) & (brightest > 0)
                 & (faintest < brightest)).any(axis=1)
    return (np.where(nonfinite, np.int32(Flag.NAN_PIXELS), np.int32(0))
            | np.where(empty, np.int32(Flag.EMPTY), np.int32(0))
            | np.where(saturated, np.int32(Flag.SATURATED), np.int32(0))).astype(np.int32)


def _pixel_checks_exact(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pixel_checks` of ``(n, bands, pixels)`` holding NaN or infinite pixels."""
    finite = np.isfinite(flat)
    empty = (flat == 0).all(axis=2).any(axis=1)
    brightest = np.where(finite, flat, -np.inf).max(axis=2)
    faintest = np.where(finite, flat, np.inf).min(axis=2)
    at_top = (flat == brightest[..., None]).sum(axis=2)
    no_signal = ~(finite & (flat != 0)).any(axis=(1, 2))
    return _flags(~finite.all(axis=(1, 2)), empty, at_top, brightest, faintest), no_signal


def merge_flags(pixel: np.ndarray, store_flags: np.ndarray) -> np.ndarray:
    """Store flags plus the pixel checks' flags, NAN_PIXELS only where the store's flags
    (off the image edge, no data, an unreadable chunk) do not already explain the NaNs."""
    explained = (store_flags & (Flag.OFF_EDGE | Flag.NO_DATA | Flag.UNREADABLE)) != 0
    nan = (pixel & Flag.NAN_PIXELS) != 0
    return (store_flags | (pixel & ~np.int32(Flag.NAN_PIXELS))
            | np.where(nan & ~explained, np.int32(Flag.NAN_PIXELS), np.int32(0))).astype(np.int32)


def blank_rows(columns: dict[str, np.ndarray], rows: np.ndarray) -> None:
    """Set the estimates of ``rows`` to NaN (integer columns, e.g. feature indices, to -1),
    in place: for cutouts with nothing to measure."""
    if not rows.any():
        return
    for values in columns.values():
        values[rows] = np.nan if np.issubdtype(values.dtype, np.floating) else -1


class Estimator:
    """Apply ``models`` to batches of raw cutouts on ``device``."""

    def __init__(self, checkpoints: list[tuple[ModelColumns, Checkpoint]],
                 device: str = "cpu", store_labels: Sequence[str] = ()) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.models = []
        for columns, checkpoint in checkpoints:
            module = build_network(checkpoint).to(self.device)
            if self.cuda:
                module = module.to(memory_format=torch.channels_last)
            kind = get_kind(checkpoint.kind)
            self.models.append(LoadedModel(
                columns, checkpoint, module, kind,
                _truth_specs(checkpoint, store_labels) if kind.needs_truth else None))
        self._inputs: dict[tuple, ModelInput] = {}
        self._input_of: list[tuple] = []
        for m in self.models:
            model_input = m.checkpoint.model_input()
            self._inputs.setdefault(model_input.key, model_input)
            self._input_of.append(model_input.key)

    @property
    def reads_images(self) -> bool:
        """Whether some model reads cutouts (else the pixels need not be read)."""
        return any(i.reads_images for i in self._inputs.values())

    @property
    def reads_photometry(self) -> bool:
        """Whether some model reads the store's photometry."""
        return any(i.reads_photometry for i in self._inputs.values())

    @property
    def photometry_bands(self) -> list[str]:
        """The bands whose photometry some model reads."""
        return sorted({b for i in self._inputs.values() for b in i.photometry_bands})

    @property
    def truth_labels(self) -> list[str]:
        """The store labels :meth:`run` needs in ``labels`` (the truths some kind reads)."""
        return label_columns([s for m in self.models for s in m.truth_specs or []])

    def _truth(self, model: LoadedModel, labels: Mapping[str, np.ndarray] | None,
               n: int) -> np.ndarray | None:
        specs = model.truth_specs
        if specs is None:
            return None
        out = np.full((n, len(specs)), np.nan, dtype=np.float32)
        for j, spec in enumerate(specs):
            if spec is not None and labels is not None and spec.label in labels:
                out[:, j] = values_from_labels(labels, n, [spec])[:, 0]
        return out

    def warm_up(self, bands: int, height: int, width: int, n: int = 16) -> None:
        """Run a small batch of zeros once, so that one-time costs (oneDNN primitives,
        cuDNN autotuning, allocator growth) are paid at start-up, not in the first shard."""
        images = np.zeros((n, bands, height, width), dtype=np.float32) \
            if self.reads_images else None
        ones = dict.fromkeys(self.photometry_bands, np.ones(n, dtype=np.float32))
        self.run(self.prepare(images, ones))

    def __call__(self, images: np.ndarray | None,
                 photometry: Mapping[str, np.ndarray] | None = None,
                 errors: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Columns (1-D, or 2-D for list columns) of every model for ``images`` (n, b, h, w)
        and, for models that read it, the batch's photometry and its errors per band."""
        return self.run(self.prepare(images, photometry, errors))

    def prepare(self, images: np.ndarray | None,
                photometry: Mapping[str, np.ndarray] | None = None,
                errors: Mapping[str, np.ndarray] | None = None) -> dict[tuple, torch.Tensor]:
        """Each input's network tensor for raw ``images`` (and photometry), on the host
        (inference calls this on its reader threads; :meth:`run` moves them to the device)."""
        photometry, errors = photometry or {}, errors or {}
        return {key: model_input.apply(model_input.raw(images, photometry, errors))
                for key, model_input in self._inputs.items()}

    @torch.inference_mode()
    def run(self, inputs: dict[tuple, torch.Tensor],
            forward_seconds: list[float] | None = None,
            labels: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Every model's columns for :meth:`prepare`'s ``inputs`` (``labels``: the batch's
        :attr:`truth_labels` columns, for kinds that need truths); with ``forward_seconds``
        given, the time inside the networks' forward passes is appended to it (the rest is
        moving inputs and the kinds' output handling; on a GPU the passes are asynchronous,
        so the wait for them falls in the output handling)."""
        if self.cuda:  # an input moves once, whatever the number of models reading it
            inputs = {key: _to_device(x, self.device) for key, x in inputs.items()}
        out: dict[str, np.ndarray] = {}
        for model, key in zip(self.models, self._input_of, strict=True):
            x = inputs[key]
            timing = (contextlib.nullcontext() if forward_seconds is None
                      else _timing_forward(model.module, forward_seconds))
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda), timing:
                truth = self._truth(model, labels, len(x))
                out.update(model.columns.name_estimates(model.kind.infer(
                    model.module, x, model.columns, model.checkpoint, truth)))
        return out


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pinned, asynchronous copy; cutouts in channels_last (the convolutions' layout)."""
    moved = x if x.is_cuda else x.pin_memory().to(device, non_blocking=True)
    return moved.contiguous(memory_format=torch.channels_last) if moved.dim() == 4 else moved


def _truth_specs(checkpoint: Checkpoint, store_labels: Sequence[str]
                 ) -> list[TargetSpec | None]:
    """Each target's spec against the store's labels, None for a target it has no label of."""
    specs: list[TargetSpec | None] = []
    for info in checkpoint.targets:
        try:
            specs.extend(resolve_targets([info.name], list(store_labels)))
        except InvalidParameterError:
            specs.append(None)
    return specs


@contextlib.contextmanager
def _timing_forward(module: nn.Module, seconds: list[float]) -> Iterator[None]:
    """Append the duration of each forward pass of ``module`` inside the block to
    ``seconds`` (hooks, so that a kind's ``infer`` needs no timing code of its own)."""
    started: list[float] = []

    def before(*_: object) -> None:
        started.append(time.perf_counter())

    def after(*_: object) -> None:
        seconds.append(time.perf_counter() - started.pop())

    handles = [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
