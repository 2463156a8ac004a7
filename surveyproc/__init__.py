"""surveyproc: physical estimates, calibrated PDFs and sparse features for every galaxy of a survey.

The package is laid out by stage, data flowing one way:
``store`` (survey cutouts in Zarr) -> ``models``/``train``/``infer`` -> ``catalog``
(Parquet) -> ``stats`` (Dask).  This top level re-exports the pieces most
users touch.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import SurveyprocError
from .flags import Flag

__all__ = ["Flag", "SurveyprocError", "__version__"]
