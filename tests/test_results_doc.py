"""docs/results.md is generated from docs/results/*.json, and every file there is shown."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def report():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("report")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_results_document_is_what_the_raw_results_give(report):
    # fails when a figure is edited by hand or a benchmark's results were not regenerated
    assert report.DOCUMENT.read_text() == report.build(), \
        "docs/results.md is out of date: run python benchmarks/report.py"


def test_every_raw_results_file_has_a_section_and_a_command(report):
    files = sorted(report.RESULTS.glob("*.json"))
    assert files, "no raw results under docs/results/"
    text = report.DOCUMENT.read_text()
    for path in files:
        record = json.loads(path.read_text())
        assert path.stem in report.BENCHMARKS, f"{path.name}: no section renders it"
        assert record["command"].startswith(f"python benchmarks/{path.stem}.py")
        assert (BENCHMARKS / f"{path.stem}.py").exists()
        assert f"docs/results/{path.name}" in text


def test_a_changed_figure_changes_the_document(report, tmp_path):
    # the document really is computed from the files: alter one raw figure, see it move
    record = json.loads((report.RESULTS / "store_read.json").read_text())
    (tmp_path / "same").mkdir()
    (tmp_path / "same" / "store_read.json").write_text(json.dumps(record))
    record["results"]["rows"][0]["megabytes"] *= 10
    (tmp_path / "altered").mkdir()
    (tmp_path / "altered" / "store_read.json").write_text(json.dumps(record))
    same, altered = report.build(tmp_path / "same"), report.build(tmp_path / "altered")
    assert "Store reader" in same and same != altered
