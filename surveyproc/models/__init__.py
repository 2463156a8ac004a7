"""Models: the ResNet-18 backbone, SFNet and its dense/PCA baselines, the binned-density PDF model.

Build any of them by name with :func:`get_model`; save and load them, with their
preprocessing and provenance, as :class:`Checkpoint` files.
"""

from __future__ import annotations

from .checkpoint import Checkpoint, TargetInfo, load_checkpoint, save_checkpoint
from .density import BinnedDensity, Grid
from .pca import PCARegression
from .preprocess import Normalization
from .registry import get_model, model_entry, registered
from .resnet import ResNet18
from .sfnet import DenseCNN, SFNet
from .targets import TargetSpec, resolve_targets, target_values
from .topk import TopK

__all__ = [
    "BinnedDensity",
    "Checkpoint",
    "DenseCNN",
    "Grid",
    "Normalization",
    "PCARegression",
    "ResNet18",
    "SFNet",
    "TargetInfo",
    "TargetSpec",
    "TopK",
    "get_model",
    "load_checkpoint",
    "model_entry",
    "registered",
    "resolve_targets",
    "save_checkpoint",
    "target_values",
]
