"""Progress bars for long work: objects done / total, rate and ETA, on stderr.

On a terminal the bar redraws twice a second; in a log (CI, a Kubernetes pod)
it writes a line every 30 seconds so logs stay readable.  ``SURVEYPROC_PROGRESS=0``
turns bars off.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(*, total: int | None, desc: str, unit: str = "obj") -> tqdm:
    """A tqdm bar configured for surveyproc's commands (use as a context manager)."""
    enabled = os.environ.get("SURVEYPROC_PROGRESS", "1") != "0"
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        dynamic_ncols=True,
        mininterval=0.5 if interactive else 30.0,
        disable=not enabled,
        file=sys.stderr,
    )
