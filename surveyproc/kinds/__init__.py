"""Model kinds as plug-ins: one module per family, registered by name.

See :mod:`.base` for what a kind owns and :mod:`.registry` for where kinds
come from (built-ins here, installed entry points, a job's ``plugins:``).
"""

from __future__ import annotations

from .base import KindAggregator, ModelKind, ModelSettings, ReportContext, TrainingData
from .registry import build_network, get_kind, load_plugins, register_kind, registered_kinds

__all__ = [
    "KindAggregator",
    "ModelKind",
    "ModelSettings",
    "ReportContext",
    "TrainingData",
    "build_network",
    "get_kind",
    "load_plugins",
    "register_kind",
    "registered_kinds",
]
