"""Every URL a run writes, owned by one small object beside the job spec.

No stage imports another stage to learn where things are: training writes
``layout.checkpoint(name)``, inference reads it, the statistics read
``layout.catalog`` and write ``layout.report``.

Examples
--------
>>> layout = OutputLayout("s3://bucket/run")
>>> layout.checkpoint("sfnet"), layout.catalog, layout.report
('s3://bucket/run/checkpoints/sfnet.pt', 's3://bucket/run/catalog', 's3://bucket/run/report')
>>> OutputLayout("s3://bucket/run", catalog_override="s3://other/cat").catalog
's3://other/cat'
"""

from __future__ import annotations

from dataclasses import dataclass

from .fs import join, normalize

__all__ = ["OutputLayout"]


@dataclass(frozen=True)
class OutputLayout:
    """The output directory's layout (``catalog`` may live elsewhere)."""

    dir: str
    catalog_override: str | None = None

    def checkpoint(self, model: str) -> str:
        """The model's checkpoint (weights, preprocessing, provenance)."""
        return join(self.dir, "checkpoints", f"{model}.pt")

    @property
    def ray_train(self) -> str:
        """Ray Train's storage: per-epoch resumable training states."""
        return join(self.dir, "ray_train")

    @property
    def catalog(self) -> str:
        """The catalog: ``<dir>/catalog``, or the override; a relative local path is made
        absolute here, in the driver (a Ray actor's working directory is not the
        command's, and it would write the parts there)."""
        return normalize(self.catalog_override) if self.catalog_override \
            else join(self.dir, "catalog")

    def translated(self, model: str) -> str:
        """The survey translated by an image-translator model (a store)."""
        return join(self.dir, "translated", f"{model}.zarr")

    @property
    def report(self) -> str:
        return join(self.dir, "report")

    @property
    def run_summary(self) -> str:
        return join(self.dir, "run_summary.json")
