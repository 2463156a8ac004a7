"""Inference outside the training domain: refused stores (other unit, other pixel scale) fail
in one line before anything is written; objects outside the training distribution are
flagged OUT_OF_DISTRIBUTION, counted and warned about, and keep their estimates."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest
import zarr

from surveyproc.catalog import read_catalog
from surveyproc.cli import format_infer, main
from surveyproc.flags import Flag
from surveyproc.infer import run_inference
from surveyproc.jobs import JobSpec
from surveyproc.models import save_checkpoint
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.testing import seeded_checkpoint

CONFIG = SynthConfig(n=600, size=24, bands=("g", "r"), seed=11, chunk=100)
MODEL = {"name": "sf", "kind": "sfnet", "k": 2, "width": 8, "targets": ["metallicity"]}


@pytest.fixture(scope="module")
def trained_on(tmp_path_factory):
    """A checkpoint whose training domain is a synthetic survey (local, read by the CLI)."""
    root = tmp_path_factory.mktemp("domain")
    store = synthesize(str(root / "train.zarr"), CONFIG, parallel=False)
    save_checkpoint(seeded_checkpoint(store, "sfnet", ["metallicity"], k=2),
                    str(root / "out/checkpoints/sf.pt"))
    return root


def _job(store_url: str, out: str) -> JobSpec:
    return JobSpec.model_validate({"name": "d", "store": {"url": store_url},
                                   "output": {"dir": out}, "models": [MODEL],
                                   "metrics": {"enabled": False}})


def test_a_shallower_survey_is_flagged_counted_and_keeps_its_estimates(trained_on):
    ten_times = {b: 10 * float(v) for b, v in zip(CONFIG.bands, CONFIG.sky_sigma(), strict=True)}
    shallow = CONFIG.model_copy(update={"sky_noise": ten_times})
    store = synthesize("memory://domain-shallow/s.zarr", shallow, parallel=False)
    save_checkpoint(seeded_checkpoint(synthesize("memory://domain-deep/s.zarr", CONFIG,
                                                 parallel=False), "sfnet", ["metallicity"],
                                      k=2), "memory://domain-out/checkpoints/sf.pt")
    job = _job(store.url, "memory://domain-out")
    result = run_inference(job, store)
    table = read_catalog("memory://domain-out/catalog")
    flagged = (np.asarray(table.column("flags")) & Flag.OUT_OF_DISTRIBUTION) != 0
    assert result.complete and flagged.mean() > 0.9
    assert result.out_of_distribution == int(flagged.sum())
    assert result.ood_reasons.get("noise g", 0) > 0.9 * store.n_objects
    assert pc.sum(pc.is_nan(table.column("metallicity_mean"))).as_py() == 0  # kept
    warning = format_infer(result).splitlines()[-1]
    assert warning.startswith(f"warning: {result.out_of_distribution:,} of 600 objects")
    assert "OUT_OF_DISTRIBUTION" in warning and "noise g" in warning


def test_the_training_survey_itself_is_rarely_flagged(trained_on):
    job = _job(str(trained_on / "train.zarr"), str(trained_on / "out"))
    from surveyproc.store import open_store

    result = run_inference(job.model_copy(update={"infer": job.infer.model_copy(
        update={"catalog": "memory://domain-self/catalog"})}), open_store(job.store.url))
    assert result.complete and result.out_of_distribution < 0.03 * 600
    assert ("warning:" in format_infer(result)) == (result.out_of_distribution > 0)


def _refused(trained_on, tmp_path, capsys, store_url: str) -> str:
    job = tmp_path / "job.yaml"
    job.write_text(f"name: r\nstore: {{url: {store_url}}}\noutput: {{dir: {trained_on / 'out'}}}"
                   f"\ninfer: {{catalog: {tmp_path / 'catalog'}}}\nmodels: [{MODEL}]\n"
                   .replace("'", ""))
    assert main(["infer", str(job)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert not (tmp_path / "catalog").exists()
    return err[0]


def test_another_pixel_scale_is_refused_in_one_line(trained_on, tmp_path, capsys):
    other = CONFIG.model_copy(update={"pixel_scale": 1.0, "n": 100})  # trained at 0.7
    synthesize(str(tmp_path / "other.zarr"), other, parallel=False)
    line = _refused(trained_on, tmp_path, capsys, str(tmp_path / "other.zarr"))
    assert "has 1 arcsec/pixel but model" in line and "trained at 0.7" in line
    assert "synth --like" in line


def test_raw_counts_are_refused_in_one_line(trained_on, tmp_path, capsys):
    synthesize(str(tmp_path / "counts.zarr"), CONFIG.model_copy(update={"n": 100}),
               parallel=False)
    zarr.open_group(str(tmp_path / "counts.zarr"), mode="r+").attrs["flux_unit"] = "count"
    line = _refused(trained_on, tmp_path, capsys, str(tmp_path / "counts.zarr"))
    assert "holds pixels in 'count' but model" in line and "--zero-point" in line


def test_inference_judges_the_measures_the_store_keeps(trained_on, tmp_path):
    """The training-domain check reads each cutout's kept pixel measures instead of
    measuring them again: a store whose kept noise says ten times the training noise for
    its first 100 objects has exactly those flagged; without the measures (a store
    written before they were kept) the pixels are measured and the flags agree."""
    from surveyproc.store import open_store

    url = str(trained_on / "train.zarr")

    def flags(store_url: str, catalog: str) -> np.ndarray:
        job = _job(store_url, str(trained_on / "out"))
        job = job.model_copy(update={"infer": job.infer.model_copy(
            update={"catalog": catalog})})
        run_inference(job, open_store(store_url))
        table = read_catalog(catalog)
        order = np.argsort(np.asarray(table.column("object_id")))
        return (np.asarray(table.column("flags"))[order] & Flag.OUT_OF_DISTRIBUTION) != 0

    as_measured = flags(url, f"memory://kept-{tmp_path.name}/a")
    import shutil

    tampered = tmp_path / "tampered.zarr"
    shutil.copytree(url, tampered)
    kept = zarr.open_array(str(tampered / "pixel_measures"), mode="r+")
    values = kept[:]
    values[:100, 1] *= 10.0  # noise, every band
    kept[:] = values
    flagged = flags(str(tampered), f"memory://kept-{tmp_path.name}/b")
    assert flagged[:100].all()
    assert (flagged[100:] == as_measured[100:]).all()

    older = tmp_path / "older.zarr"
    shutil.copytree(url, older)
    shutil.rmtree(older / "pixel_measures")
    assert not open_store(str(older)).layout.has_pixel_measures
    assert (flags(str(older), f"memory://kept-{tmp_path.name}/c") == as_measured).all()
