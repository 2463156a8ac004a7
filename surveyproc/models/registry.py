"""Model registry: build any surveyproc model from its name and a plain config dict.

A checkpoint stores ``(kind, config)``; :func:`get_model` rebuilds the same
architecture from them, so adding a model is one :func:`register` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from ..errors import InvalidParameterError
from .density import BinnedDensity, Grid
from .sfnet import DenseCNN, SFNet

__all__ = ["ModelEntry", "get_model", "model_entry", "register", "registered"]

Task = Literal["regression", "density"]


@dataclass(frozen=True)
class ModelEntry:
    """How to build a model and what it predicts (``regression`` or ``density``)."""

    name: str
    build: Callable[..., nn.Module]
    task: Task
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, task: Task, description: str):
    """Decorator: register a builder ``f(in_bands, n_targets, **config) -> nn.Module``."""

    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelEntry(name, build, task, description)
        return build

    return wrap


def registered() -> list[str]:
    """Names of every registered model."""
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (one clear line if unknown)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        msg = f"unknown model kind {name!r}; known kinds: {', '.join(registered())}"
        raise InvalidParameterError(msg) from None


def get_model(name: str, **config: Any) -> nn.Module:
    """Build model ``name`` from ``config`` (``in_bands``, ``n_targets`` and its own keys).

    Examples
    --------
    >>> net = get_model("sfnet", in_bands=3, n_targets=1, k=4)
    >>> type(net).__name__, net.topk.k
    ('SFNet', 4)
    """
    entry = model_entry(name)
    try:
        return entry.build(**config)
    except TypeError as error:
        msg = f"model kind {name!r}: bad configuration {sorted(config)} ({error})"
        raise InvalidParameterError(msg) from None


@register("sfnet", "regression", "ResNet-18 -> ReLU -> top-k -> linear (Wu, SFNet)")
def _sfnet(in_bands: int, n_targets: int, k: int, width: int = 64) -> nn.Module:
    return SFNet(in_bands, n_targets, k, width)


@register("dense_cnn", "regression", "ResNet-18 -> ReLU -> linear (SFNet's dense baseline)")
def _dense(in_bands: int, n_targets: int, width: int = 64) -> nn.Module:
    return DenseCNN(in_bands, n_targets, width)


@register("binned_density", "density", "ResNet-18 -> softmax over target bins (PDF)")
def _density(in_bands: int, n_targets: int, low: float, high: float, n_bins: int,
             width: int = 64) -> nn.Module:
    if n_targets != 1:
        msg = f"binned_density predicts one target, got {n_targets}"
        raise InvalidParameterError(msg)
    return BinnedDensity(in_bands, Grid(low, high, n_bins), width)
