"""Models: the networks (ResNet-18 backbone, SFNet and its dense/PCA baselines, the
binned-density PDF model), their checkpoints, input normalisation and targets.

This package takes tensors and arrays; which network a job builds, and how,
is the business of :mod:`surveyproc.kinds`.
"""

from __future__ import annotations

from .checkpoint import Checkpoint, TargetInfo, load_checkpoint, save_checkpoint
from .density import BinnedDensity
from .grid import Grid
from .pca import PCANet, PCARegression
from .preprocess import Normalization
from .resnet import ResNet18
from .sfnet import DenseCNN, SFNet
from .targets import TargetSpec, resolve_targets, values_from_labels
from .topk import TopK

__all__ = [
    "BinnedDensity",
    "Checkpoint",
    "DenseCNN",
    "Grid",
    "Normalization",
    "PCANet",
    "PCARegression",
    "ResNet18",
    "SFNet",
    "TargetInfo",
    "TargetSpec",
    "TopK",
    "load_checkpoint",
    "resolve_targets",
    "save_checkpoint",
    "values_from_labels",
]
