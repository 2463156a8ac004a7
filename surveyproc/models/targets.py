"""What a model predicts: store labels, optionally log10 with a signal-to-noise cut.

A target named like a label (``metallicity``, ``redshift``) is that label.  A
target ``log_<label>`` is log10 of the label where the label is positive and,
if the store has ``<label>_err``, detected at S/N >= 3; elsewhere it is NaN,
which the losses skip.  This is how SFNet's line-flux targets
(``log_flux_halpha`` ...) are made from the measured fluxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidParameterError

__all__ = ["MIN_SIGNAL_TO_NOISE", "TargetSpec", "resolve_targets", "values_from_labels"]

MIN_SIGNAL_TO_NOISE = 3.0


@dataclass(frozen=True)
class TargetSpec:
    """One predicted quantity: its name, source label, transform and unit."""

    name: str
    label: str
    log: bool
    error_label: str | None
    unit: str


def resolve_targets(names: Sequence[str], labels: Sequence[str],
                    units: dict[str, str] | None = None) -> list[TargetSpec]:
    """Targets for ``names`` given the store's ``labels``; one line naming any unknown target."""
    units = units or {}
    specs = []
    for name in names:
        if name in labels:
            specs.append(TargetSpec(name, name, False, None, units.get(name, "")))
            continue
        base = name.removeprefix("log_")
        if name.startswith("log_") and base in labels:
            err = f"{base}_err" if f"{base}_err" in labels else None
            specs.append(TargetSpec(name, base, True, err, f"log10({units.get(base, '')})"))
            continue
        msg = (f"unknown target {name!r}: the store has labels {', '.join(labels)} "
               "(a target is a label, or log_<label>)")
        raise InvalidParameterError(msg)
    return specs


def label_columns(specs: Sequence[TargetSpec | None]) -> list[str]:
    """The store labels that :func:`values_from_labels` reads for ``specs`` (each target's
    label and, for a log target with an S/N cut, its error), sorted."""
    return sorted({n for s in specs if s is not None for n in (s.label, s.error_label) if n})


def values_from_labels(labels: Mapping[str, np.ndarray], n: int,
                       specs: Sequence[TargetSpec]) -> np.ndarray:
    """(n, targets) float32 values of ``specs`` from label columns (any mapping of arrays)."""
    out = np.empty((n, len(specs)), dtype=np.float32)
    for j, spec in enumerate(specs):
        values = np.asarray(labels[spec.label], dtype=np.float64)
        if spec.log:
            good = values > 0
            if spec.error_label is not None:
                good &= values >= MIN_SIGNAL_TO_NOISE * np.asarray(labels[spec.error_label])
            values = np.where(good, np.log10(np.where(good, values, 1.0)), np.nan)
        out[:, j] = values
    return out
