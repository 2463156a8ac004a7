from __future__ import annotations

import numpy as np
import pytest

from surveyproc.errors import InvalidParameterError
from surveyproc.models import resolve_targets
from surveyproc.models.targets import values_from_labels
from surveyproc.store import CutoutBatch

LABELS = ("metallicity", "flux_nii", "flux_nii_err", "redshift")


def _batch() -> CutoutBatch:
    return CutoutBatch(
        start=0, object_id=np.arange(4), ra=np.zeros(4), dec=np.zeros(4),
        labels={"metallicity": np.array([8.5, np.nan, 8.7, 8.9], np.float32),
                "flux_nii": np.array([100.0, 5.0, -3.0, 40.0], np.float32),
                "flux_nii_err": np.array([2.0, 2.0, 2.0, 2.0], np.float32),
                "redshift": np.array([0.1, 0.2, 0.3, 0.4], np.float32)})


def test_labels_and_log_targets_with_signal_to_noise_cut():
    specs = resolve_targets(["metallicity", "log_flux_nii"], LABELS, {"flux_nii": "1e-17 cgs"})
    assert [s.unit for s in specs] == ["", "log10(1e-17 cgs)"]
    values = values_from_labels(_batch().labels, len(_batch()), specs)
    np.testing.assert_allclose(values[:, 0], [8.5, np.nan, 8.7, 8.9])
    # 5.0 is below 3 sigma (6.0), -3.0 is not positive: both unknown
    np.testing.assert_allclose(values[:, 1], [2.0, np.nan, np.nan, np.log10(40.0)], rtol=1e-6)


def test_unknown_target_is_named():
    with pytest.raises(InvalidParameterError, match="unknown target 'log_mass'"):
        resolve_targets(["log_mass"], LABELS)
