"""Checkpoints: weights plus everything needed to use them, identified by their content hash.

A checkpoint carries the model kind and config (from which the kind, see
:func:`surveyproc.kinds.build_network`, rebuilds the architecture),
the band order and cutout size it was trained on, the input normalisation,
the targets with their units and standardisation, the training domain
(:mod:`.domain`: flux unit, pixel scale, noise and flux ranges), training
provenance and metrics, and optionally the optimiser state for resuming.  It is one
``torch.save`` file read back with ``torch.load(weights_only=True)``: no code
is unpickled.  ``model_id`` is a SHA-256 of the architecture, preprocessing,
targets and weights, so the catalog can say exactly which model made a row.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import CheckpointMismatchError, CheckpointNotFoundError
from ..fs import read_bytes, redact, write_bytes_atomic
from .domain import TrainingDomain
from .inputs import CombinedInput, ModelInput, PhotometryInput, model_input
from .preprocess import Normalization

__all__ = ["Checkpoint", "TargetInfo", "load_checkpoint", "save_checkpoint"]

FORMAT = "surveyproc-checkpoint"
VERSION = 1


@dataclass(frozen=True)
class TargetInfo:
    """A predicted target: its name, unit and the standardisation used in training."""

    name: str
    unit: str
    mean: float
    std: float


@dataclass
class Checkpoint:
    """A trained model and the facts needed to apply it to a store."""

    kind: str
    config: dict[str, Any]
    bands: list[str]
    image_size: list[int]
    normalization: Normalization
    targets: list[TargetInfo]
    state_dict: dict[str, torch.Tensor]
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] | None = None
    #: :class:`TrainingDomain` as a dict; None in checkpoints trained before it existed
    domain: dict[str, Any] | None = None

    @property
    def training_domain(self) -> TrainingDomain | None:
        return None if self.domain is None else TrainingDomain.from_dict(self.domain)

    def _identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.config, "bands": self.bands,
                "image_size": self.image_size, "normalization": list(self.normalization.scale),
                "targets": [asdict(t) for t in self.targets]}

    @property
    def model_id(self) -> str:
        """First 16 hex digits of the SHA-256 of architecture, preprocessing, targets, weights."""
        digest = hashlib.sha256(json.dumps(self._identity(), sort_keys=True).encode())
        for name in sorted(self.state_dict):
            tensor = self.state_dict[name].detach().cpu().contiguous()
            digest.update(name.encode())
            digest.update(str(tensor.dtype).encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]

    def model_input(self) -> ModelInput:
        """What the network reads: normalised cutouts, standardised photometry, or both."""
        return model_input(self.config, self.normalization)

    def check_store(self, bands: tuple[str, ...] | list[str], image_size: tuple[int, int],
                    where: str, *, has_images: bool = True,
                    photometry_bands: Sequence[str] = (),
                    error_bands: Sequence[str] = ()) -> None:
        """Refuse a store the model cannot read: for an image model, other band order or
        cutout size than training's, or no images; for a photometry model, a band's
        photometry (or, when it was trained with them, its errors) missing."""
        model_input = self.model_input()
        photometry = (model_input.photometry if isinstance(model_input, CombinedInput)
                      else model_input)
        if isinstance(photometry, PhotometryInput):
            for kind, have, needed in (("photometry", photometry_bands, photometry.bands),
                                       ("photometry errors", error_bands,
                                        photometry.bands if photometry.errors else ())):
                missing = [b for b in needed if b not in have]
                if missing:
                    msg = (f"model {self.model_id} reads the {kind} of "
                           f"{','.join(needed)} but {where} has no {kind} of "
                           f"{','.join(missing)}")
                    raise CheckpointMismatchError(msg)
        if not model_input.reads_images:
            return
        if not has_images:
            msg = (f"model {self.model_id} reads images but {where} has none (a "
                   "photometry-only store); train a model with 'inputs: photometry' for it")
            raise CheckpointMismatchError(msg)
        if list(bands) != list(self.bands):
            msg = (f"model {self.model_id} was trained on bands {','.join(self.bands)} but "
                   f"{where} has {','.join(bands)}; use a store with the same bands in the same "
                   "order")
            raise CheckpointMismatchError(msg)
        if list(image_size) != list(self.image_size):
            msg = (f"model {self.model_id} was trained on {self.image_size[0]}x"
                   f"{self.image_size[1]} cutouts but {where} has "
                   f"{image_size[0]}x{image_size[1]}")
            raise CheckpointMismatchError(msg)

    def check_domain(self, attrs: dict[str, Any], where: str,
                     pixel_scale_tolerance: float) -> list[str]:
        """Refuse a store outside the training domain (unit, sky, pixel scale); return
        warnings for lesser differences (see :meth:`TrainingDomain.check_store`)."""
        domain = self.training_domain
        if domain is None:
            return [f"model {self.model_id} records no training domain (trained by an older "
                    "surveyproc); units, pixel scale and out-of-distribution inputs are not "
                    "checked"]
        return domain.check_store(attrs, where, self.model_id, pixel_scale_tolerance)

    def to_bytes(self) -> bytes:
        meta = {**self._identity(), "format": FORMAT, "version": VERSION,
                "provenance": self.provenance, "metrics": self.metrics, "domain": self.domain,
                "model_id": self.model_id}
        buffer = io.BytesIO()
        torch.save({"meta": json.dumps(meta), "state_dict": self.state_dict,
                    "training_state": self.training_state}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "checkpoint") -> Checkpoint:
        try:
            with warnings.catch_warnings():  # torch warns before refusing; the refusal says it
                warnings.simplefilter("ignore")
                payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            meta = json.loads(payload["meta"])
        except pickle.UnpicklingError:
            msg = (f"{where}: holds Python objects beyond tensors and plain values, so it is "
                   "not loaded (weights-only loading; a checkpoint written by "
                   "surveyproc train is weights-only)")
            raise CheckpointMismatchError(msg) from None
        except Exception as error:  # a truncated or foreign file: say so in one line
            msg = f"{where}: not a surveyproc checkpoint ({type(error).__name__})"
            raise CheckpointMismatchError(msg) from None
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            msg = (f"{where}: format {meta.get('format')!r} version {meta.get('version')!r}; "
                   f"this surveyproc reads {FORMAT} version {VERSION}")
            raise CheckpointMismatchError(msg)
        return cls(
            kind=meta["kind"], config=meta["config"], bands=meta["bands"],
            image_size=meta["image_size"],
            normalization=Normalization(tuple(meta["normalization"])),
            targets=[TargetInfo(**t) for t in meta["targets"]],
            state_dict=payload["state_dict"], provenance=meta["provenance"],
            metrics=meta["metrics"], training_state=payload.get("training_state"),
            domain=meta.get("domain"),
        )


def save_checkpoint(checkpoint: Checkpoint, url: str,
                    storage_options: dict[str, Any] | None = None) -> str:
    """Write ``checkpoint`` atomically to ``url`` (any fsspec URL); return its model id."""
    write_bytes_atomic(url, checkpoint.to_bytes(), storage_options)
    return checkpoint.model_id


def load_checkpoint(url: str, storage_options: dict[str, Any] | None = None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointMismatchError
        Missing, unreadable, or not a surveyproc checkpoint.
    """
    try:
        data = read_bytes(url, storage_options)
    except FileNotFoundError:
        msg = f"checkpoint {redact(url)}: file not found"
        raise CheckpointNotFoundError(msg) from None
    return Checkpoint.from_bytes(data, f"checkpoint {redact(url)}")
