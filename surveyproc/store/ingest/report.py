"""What an ingest found: objects read cleanly, flagged, and why, with examples."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ... import flags as quality_flags
from .calibrate import BackgroundTally

__all__ = ["IngestReport"]

_MAX_EXAMPLES = 5


@dataclass
class IngestReport:
    """Counts per flag and per problem, mergeable across workers.

    Objects are never dropped: a problem sets a flag on the object and is
    counted here under a reason ("missing file", "no overlap with image"),
    with a few example objects so the cause can be found.
    """

    n_objects: int = 0
    n_clean: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    #: per-unit sky and noise medians, for the store's calibration attribute
    background: BackgroundTally = field(default_factory=BackgroundTally)

    def note(self, reason: str, example: str) -> None:
        """Count one occurrence of ``reason``, keeping a few examples."""
        self.problems[reason] = self.problems.get(reason, 0) + 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < _MAX_EXAMPLES:
            kept.append(example)

    def count_flags(self, flags: np.ndarray) -> None:
        """Add a unit's flags to the totals."""
        self.n_objects += int(flags.size)
        self.n_clean += int(np.count_nonzero(flags == 0))
        for name, hits in quality_flags.count(flags).items():
            self.flags[name] = self.flags.get(name, 0) + hits

    def merge(self, other: IngestReport) -> IngestReport:
        """Fold ``other`` into this report (returns self)."""
        self.n_objects += other.n_objects
        self.n_clean += other.n_clean
        for name, count in other.flags.items():
            self.flags[name] = self.flags.get(name, 0) + count
        for reason, count in other.problems.items():
            self.problems[reason] = self.problems.get(reason, 0) + count
            kept = self.examples.setdefault(reason, [])
            kept.extend(other.examples.get(reason, [])[: _MAX_EXAMPLES - len(kept)])
        self.background.merge(other.background)
        return self

    def to_dict(self) -> dict:
        report = asdict(self)
        del report["background"]  # summarised in the store's calibration attribute
        return report

    def format(self) -> str:
        """A few lines for the terminal."""
        lines = [f"objects     {self.n_objects:,} ingested, {self.n_clean:,} clean"]
        for name, count in sorted(self.flags.items()):
            lines.append(f"flagged     {name}: {count:,}")
        for reason, count in sorted(self.problems.items()):
            shown = "; ".join(self.examples.get(reason, []))
            lines.append(f"problem     {reason}: {count:,} (e.g. {shown})")
        return "\n".join(lines)
