"""The command line: one line and exit 2 on bad input, results on stdout, --debug tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from surveyproc import __version__
from surveyproc.cli import main
from surveyproc.errors import IngestError, JobSpecError
from surveyproc.store import open_store

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
    assert "wrote 50 synthetic galaxies (g, r; 16x16, 1.05 arcsec/pixel)" in \
        capsys.readouterr().out
    assert main(["info", url]) == 0
    text = capsys.readouterr().out
    assert "objects     50" in text and "bands       g r" in text
    assert "16 objects per chunk (4 chunks), not sharded, blosc(lz4)" in text
    assert "metallicity" in text and "redshift" in text
    # a label's unit (what report axes carry) and what it means, said apart
    assert "12+log(O/H); gas-phase, in the fibre; NaN for AGN or weak lines" in text
    attrs = open_store(url).attrs
    assert attrs["label_units"]["metallicity"] == "12+log(O/H)"
    assert attrs["label_notes"]["agn"] == "1 = AGN, 0 = not"
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


def test_global_options_are_accepted_after_the_command_too(tmp_path):
    with pytest.raises(JobSpecError):  # --debug after the command: the traceback is shown
        main(["run", str(tmp_path / "absent.yaml"), "--debug"])
    with pytest.raises(IngestError):  # and after a nested command's arguments
        main(["ingest", "cutouts", str(tmp_path / "s.zarr"), "--catalog",
              str(tmp_path / "absent.fits"), "--dir", str(tmp_path), "--bands", "g",
              "--debug"])
    assert main(["run", str(tmp_path / "absent.yaml"), "-q"]) == 2


@pytest.mark.parametrize("text", ["", "\n  \n", "# only a comment\n"])
def test_an_empty_job_file_says_it_is_empty(tmp_path, capsys, text):
    job = tmp_path / "empty.yaml"
    job.write_text(text)
    assert main(["run", str(job)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and ("is empty" in err[0] or "holds no settings" in err[0]), err
    assert not (tmp_path / "work").exists()


def test_infer_never_synthesises_a_misspelt_store(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(f"name: typo\nstore: {{url: {tmp_path / 'survy.zarr'}, synth: {{n: 50}}}}\n"
                   f"output: {{dir: {tmp_path / 'out'}}}\n")
    for command in (["infer", str(job)], ["aggregate", str(job)],
                    ["infer", str(job), "--store", str(tmp_path / "other.zarr")]):
        assert main(command) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "never synthesise" in err[0], err
    assert not (tmp_path / "survy.zarr").exists() and not (tmp_path / "other.zarr").exists()
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.s3
def test_synth_to_an_object_store_without_credentials_is_one_line(s3_endpoint, tmp_path,
                                                                   capsys, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code = main(["synth", "s3://nocreds/s.zarr", "--n", "5", "--size", "8", "--serial",
                 "-o", f"endpoint_url={s3_endpoint}", "-o", "skip_instance_cache=true"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    assert "no object-store credentials found" in err[0]


def test_infer_with_a_missing_checkpoint_fails_before_ray_starts(tmp_path):
    store = tmp_path / "s.zarr"
    assert main(["synth", str(store), "--n", "20", "--size", "8", "--serial", "-q"]) == 0
    job = tmp_path / "job.yaml"
    job.write_text(f"name: untrained\nstore: {{url: {store}}}\noutput: {{dir: {tmp_path}/out}}\n"
                   "models: [{name: mass, kind: sfnet, k: 2, targets: [log_mstar]}]\n")
    # a fresh process whose Ray, had it started, would have made its session under RAY_TMPDIR
    ray_tmp = Path(tempfile.mkdtemp(prefix="sp-ray-"))  # short: Ray's socket paths must fit
    result = subprocess.run([sys.executable, "-m", "surveyproc.cli", "infer", str(job)],
                            capture_output=True, text=True,
                            env={**os.environ, "RAY_ADDRESS": "", "RAY_TMPDIR": str(ray_tmp)})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    started = any(ray_tmp.iterdir())
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not started, "Ray was started before the checkpoints were checked"
    assert "model mass: no checkpoint" in lines[0] and "train it first" in lines[0]
    assert not (tmp_path / "out" / "catalog").exists()
