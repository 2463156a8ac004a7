"""The command line: one line and exit 2 on bad input, results on stdout, --debug tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from surveyproc import __version__
from surveyproc.cli import main
from surveyproc.errors import JobSpecError

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_help_from_a_real_process():
    out = subprocess.run([sys.executable, "-m", "surveyproc.cli", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"surveyproc {__version__}"
    for command in (["synth"], ["info"], ["run"], ["ingest", "cutouts"], ["ingest", "images"]):
        result = subprocess.run([sys.executable, "-m", "surveyproc.cli", *command, "--help"],
                                capture_output=True, text=True)
        assert result.returncode == 0 and "usage: surveyproc" in result.stdout


def test_synth_then_info_in_one_process(tmp_path, capsys):
    url = str(tmp_path / "s.zarr")
    assert main(["synth", url, "--n", "50", "--size", "16", "--bands", "g,r",
                 "--serial", "--chunk", "16"]) == 0
    assert "wrote 50 synthetic galaxies (g, r; 16x16)" in capsys.readouterr().out
    assert main(["info", url]) == 0
    text = capsys.readouterr().out
    assert "objects     50" in text and "bands       g r" in text
    assert "16 objects per chunk (4 chunks), not sharded, zstd" in text
    assert "metallicity" in text and "redshift" in text
    assert main(["synth", url, "--n", "5", "--serial"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "x.zarr"), "--n", "0", "--serial"]) == 2
    assert capsys.readouterr().err == ("surveyproc: error: n: Input should be greater than or "
                                       "equal to 1 (got 0)\n")
    with pytest.raises(SystemExit) as caught:
        main(["synth"])
    assert caught.value.code == 2


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(JobSpecError):
        main(["--debug", "run", str(tmp_path / "absent.yaml")])


def test_run_dry_run_fills_defaults(capsys):
    assert main(["run", str(ROOT / "jobs" / "quickstart.yaml"), "--dry-run",
                 "--set", "resources.actors=3"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["resources"]["actors"] == 3 and job["dask"]["n_workers"] == 2


def test_run_bad_job_is_one_line(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text("name: t\nstore: {url: s.zarr, sinth: {}}\noutput: {dir: o}\n")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"surveyproc: error: job {path}: unknown key 'store.sinth' "
                   "(did you mean 'store.synth'?)\n")


@pytest.mark.ray_cluster
def test_run_synthesises_the_store_then_reuses_it(tmp_path, capsys, ray_session, dask_session,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = ROOT / "jobs" / "quickstart.yaml"
    small = ["--set", "store.synth.n=96", "--set", "store.synth.size=16",
             "--set", "store.synth.chunk=32", "--set", "train.epochs=1",
             "--set", "train.batch_size=8"]
    assert main(["run", str(job), *small]) == 0
    out = capsys.readouterr().out
    assert f"store:   {tmp_path / 'work/quickstart/survey.zarr'}" in out
    assert "checkpoint sfnet_metallicity: " in out and "checkpoint photoz: " in out
    summary = json.loads((tmp_path / "work/quickstart/run_summary.json").read_text())
    assert summary["store"]["n_objects"] == 96
    assert summary["stages"] == ["store", "train", "infer", "aggregate"]
    assert f"report: {tmp_path / 'work/quickstart/report/index.html'}" in out
    assert (tmp_path / "work/quickstart/report/calibration_redshift.csv").exists()
    assert [m["name"] for m in summary["models"]] == ["sfnet_metallicity", "photoz"]
    assert summary["catalog"]["complete"] and summary["catalog"]["objects_run"] == 96
    assert f"catalog: {tmp_path / 'work/quickstart/catalog'} (96 objects, complete" in out
    part = next((tmp_path / "work/quickstart/catalog").glob("part-*.parquet"))
    part_stamp = part.stat().st_mtime_ns
    store_stamp = (tmp_path / "work/quickstart/survey.zarr/zarr.json").stat().st_mtime_ns
    checkpoint = tmp_path / "work/quickstart/checkpoints/photoz.pt"
    checkpoint_stamp = checkpoint.stat().st_mtime_ns
    assert main(["run", str(job), *small]) == 0  # everything up to date: nothing redone
    assert (tmp_path / "work/quickstart/survey.zarr/zarr.json").stat().st_mtime_ns == \
        store_stamp
    assert checkpoint.stat().st_mtime_ns == checkpoint_stamp
    assert part.stat().st_mtime_ns == part_stamp  # committed shards are not redone
