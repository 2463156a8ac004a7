"""The report shows where estimates fail: estimate-vs-truth for every target, bins off
calibration named in the text, sparse bins marked, units on binned axes, every table
column explained, exemplars labelled, flags counted; and it renders in a browser."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from surveyproc.stats import aggregate_catalog
from surveyproc.stats.calibration import FEW_OBJECTS, JOINT_BINS, MIN_BIN_OBJECTS
from surveyproc.stats.report import column_meaning, exemplar_images, write_report
from surveyproc.testing import label_store, synthetic_catalog
from tests.support.catalogs import PHOTO_Z, F, K, N
from tests.support.servers import browser_check, require_program

pytestmark = pytest.mark.slow


def _report(aggregates, store, root, out):
    page = write_report(aggregates, store, out, {}, str(root / "cat"), "test")
    return page.read_text(), json.loads((out / "summary.json").read_text())


def test_report_renders_in_a_headless_browser(small, tmp_path):
    store, root, _, _, aggregates = small
    page = write_report(aggregates, store, tmp_path / "report", {}, str(root / "cat"), "test")
    assert (tmp_path / "report" / "summary.json").exists()
    assert (tmp_path / "report" / "calibration_redshift.csv").exists()
    check = browser_check(str(page), str(tmp_path / "shot.png"))
    require_program("headless Chromium (apt-get install chromium-headless-shell)",
                    check is not None)
    assert check is not None
    assert check.images >= 6 and check.broken == [] and check.console == []
    assert (tmp_path / "shot.png").stat().st_size > 20_000


def test_flags_are_counted_and_out_of_distribution_objects_called_out(small, tmp_path):
    store, root, _, _, aggregates = small
    assert aggregates.flags == {"OUT_OF_DISTRIBUTION": N // 10}
    text, summary = _report(aggregates, store, root, tmp_path / "report")
    assert f"{N // 10:,} objects (10.0%) lie outside the models' training distribution" in text
    assert "extrapolations" in text
    assert summary["flags"] == {"OUT_OF_DISTRIBUTION": N // 10}


def test_estimate_against_truth_for_every_point_target(small, tmp_path):
    """The figure's histogram holds every galaxy's (truth, estimate) pair: equal to NumPy's."""
    store, root, table, labels, aggregates = small
    for target, point in (("redshift", "redshift_mean"), ("metallicity", "metallicity_mean")):
        counts, off = aggregates.joint[target]
        value_range = aggregates.spec.ranges[target]
        truth, estimate = labels[target].to_numpy(), table[point].to_numpy(np.float64)
        known = np.isfinite(truth) & np.isfinite(estimate)
        expected = np.histogram2d(truth[known], estimate[known], bins=JOINT_BINS,
                                  range=[value_range, value_range])[0]
        np.testing.assert_array_equal(counts, expected)
        assert off == known.sum() - expected.sum()
    # redshift on its PDF grid; metallicity (no PDF) on its labels' spread
    assert aggregates.spec.ranges["redshift"] == (0.0, 0.4)
    low, high = aggregates.spec.ranges["metallicity"]
    assert low < np.nanpercentile(labels["metallicity"], 1) < 8.7 < high
    text, _ = _report(aggregates, store, root, tmp_path / "report")
    for target in ("redshift", "metallicity"):
        assert f'src="estimate_{target}.png"' in text
        assert (tmp_path / "report" / f"estimate_{target}.png").stat().st_size > 5_000


def test_binned_statistics_name_their_quantity_and_unit(small):
    calibration = small.aggregates.calibration
    for target, unit in (("redshift", ""), ("metallicity", " [dex]")):
        by = set(calibration[target]["binned_by"]) - {""}
        assert by == {"r-band magnitude [AB mag]", f"true {target}{unit}"}
        groups = list(calibration[target]["group"])
        assert "r 17-18 mag" in groups
        assert f"{target} 0-0.08" in groups if target == "redshift" else any(
            g.startswith(f"{target} 8.") for g in groups)


def test_bins_off_calibration_are_named_in_the_text(small, tmp_path, capsys):
    """PDFs too narrow above z = 0.32 only: the highest redshift bin is called off (its
    68 % coverage), the lower redshift bins are not."""
    store = small.store
    synthetic_catalog(str(tmp_path / "cat"), store, rows_per_part=1000, n_features=F, k=K,
                      overconfident_above=0.32, seed=6)
    aggregates = aggregate_catalog(str(tmp_path / "cat"), store, targets=PHOTO_Z)
    text, summary = _report(aggregates, store, tmp_path, tmp_path / "report")
    off = {b["group"]: b["why"] for b in summary["calibration"]["redshift"]["off_calibration"]}
    assert "redshift 0.32-0.4" in off and "coverage_68" in off["redshift 0.32-0.4"]
    assert not [g for g in off if g.startswith("redshift 0-") or g.startswith("redshift 0.08")]
    warning = re.search(r'<div class="warning">(.*?)</div>', text, re.S)
    assert warning is not None and "<b>redshift 0.32-0.4</b>" in warning.group(1)
    # the calibrated shared catalog has no such warning
    calibrated, _ = _report(small.aggregates, store, small.root, tmp_path / "calibrated")
    assert "No bin is off calibration" in calibrated.split("redshift: point")[1]
    # and surveyproc aggregate says so in one line
    from surveyproc.cli import main

    job = tmp_path / "job.yaml"
    job.write_text(f"name: miscalibrated\nstore: {{url: {store.url}}}\n"
                   f"output: {{dir: {tmp_path / 'o'}}}\ninfer: {{catalog: {tmp_path / 'cat'}}}\n"
                   "targets: {redshift: {relative_error: true, point: mean}}\n")
    assert main(["aggregate", str(job)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith(f"warning: {len(off)} bins off calibration (")
    assert next(iter(off)) in lines[-1]


def test_bins_with_few_objects_are_marked_not_judged(tmp_path, dask_session):
    store = label_store(str(tmp_path / "labels.zarr"), 150, chunk=150, seed=2)
    synthetic_catalog(str(tmp_path / "cat"), store, rows_per_part=150, n_features=F, k=K,
                      pdf_scale=0.3, seed=7)  # over-confident everywhere
    aggregates = aggregate_catalog(str(tmp_path / "cat"), store, targets=PHOTO_Z)
    table = aggregates.calibration["redshift"]
    bins = table[table["group"] != "all"]
    few = bins[bins["n"] < MIN_BIN_OBJECTS]
    assert len(few) and (few["note"] == FEW_OBJECTS).all()
    judged = bins[bins["n"] >= MIN_BIN_OBJECTS]
    assert len(judged) and judged["note"].str.contains("coverage_68").all()
    text, summary = _report(aggregates, store, tmp_path, tmp_path / "report")
    assert set(summary["calibration"]["redshift"]["few_objects"]) == set(few["group"])
    assert not set(few["group"]) & {b["group"] for b in
                                    summary["calibration"]["redshift"]["off_calibration"]}
    assert f"fewer than {MIN_BIN_OBJECTS} galaxies are marked" in text


def test_every_table_column_is_explained_under_its_table(small, tmp_path):
    store, root, _, _, aggregates = small
    text, _ = _report(aggregates, store, root, tmp_path / "report")
    tables = re.findall(r"<table.*?</table>\s*<dl class=\"columns\">(.*?)</dl>", text, re.S)
    assert len(tables) == text.count("<table") >= 5
    for header, glossary in zip(re.findall(r"<thead>(.*?)</thead>", text, re.S), tables,
                                strict=True):
        for column in re.findall(r"<th>(.*?)</th>", header):
            assert column_meaning(column), column
            assert f"<dt>{column}</dt>" in glossary, column


def test_exemplar_cutouts_carry_their_object_ids(small):
    ids = [int(i) for i in small.store.read_column("object_id")[[5, 17, 2]]]
    images = exemplar_images(small.store, {3: ids, 4: [ids[0], 10**9]})
    assert [i for i, _ in images[3]] == ids
    assert [i for i, _ in images[4]] == [ids[0]]  # an unknown id is skipped
    assert images[3][0][1].shape[-1] == 3


def test_the_calibration_figure_draws_bins_without_a_finite_scatter(tmp_path):
    """Bins whose every estimate is NaN (all their objects flagged with no signal) have no
    sigma_NMAD: the figure still draws (it crashed setting NaN axis limits)."""
    import pandas as pd

    from surveyproc.stats.figures import calibration_figure

    table = pd.DataFrame({"group": ["all", "r 18-20", "r 20-22"], "note": ["", "", ""],
                          "binned_by": ["", "r", "r"], "bin_low": [0.0, 18.0, 20.0],
                          "bin_high": [0.0, 20.0, 22.0], "sigma_nmad": [np.nan] * 3,
                          "bias_median": [np.nan] * 3})
    name = calibration_figure(table, "redshift", tmp_path, "calibration_redshift.png")
    assert (tmp_path / name).stat().st_size > 1000
