"""Synthetic survey with known physics: the test bed of every model and statistic.

See ``docs/synthetic.md`` for the generative model.
"""

from __future__ import annotations

from typing import Any

from .settings import SynthConfig

__all__ = ["LABEL_UNITS", "Galaxies", "SynthConfig", "draw_galaxies", "generate", "synthesize"]

_LAZY = {"LABEL_UNITS": "generator", "generate": "generator", "synthesize": "generator",
         "Galaxies": "physics", "draw_galaxies": "physics"}


def __getattr__(name: str) -> Any:
    """The generator on first use: job files import :class:`SynthConfig` from here, and
    an inference actor should not pay for scipy and astropy it never calls."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
