"""Synthetic survey with known physics: the test bed of every model and statistic.

See ``docs/synthetic.md`` for the generative model.
"""

from __future__ import annotations

from .generate import LABEL_UNITS, generate, synthesize
from .physics import Galaxies, draw_galaxies
from .settings import SynthConfig

__all__ = ["LABEL_UNITS", "Galaxies", "SynthConfig", "draw_galaxies", "generate", "synthesize"]
