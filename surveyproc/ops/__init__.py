"""Operations: Ray runtime, progress, logging (and, later, metrics and job submission)."""

from __future__ import annotations

from .progress import progress_bar
from .ray_runtime import map_units, ray_runtime

__all__ = ["map_units", "progress_bar", "ray_runtime"]
