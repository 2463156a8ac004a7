"""Kind ``translator`` end to end: trained through the training path on a paired survey,
run over a whole survey by ``surveyproc translate`` on Ray actors, and the translated
store read by ``surveyproc infer`` unchanged."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from surveyproc.catalog import read_catalog
from surveyproc.cli import main
from surveyproc.errors import InvalidParameterError
from surveyproc.infer import run_inference
from surveyproc.infer.translate import plan_translation, run_translation
from surveyproc.jobs import JobSpec
from surveyproc.kinds import build_network, get_kind
from surveyproc.models import load_checkpoint, save_checkpoint
from surveyproc.models.translation import emulate_noise
from surveyproc.store import open_store
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.store.translated import done_marks
from surveyproc.testing import seeded_checkpoint
from surveyproc.train import train_job

BANDS = ("g", "r", "i")
N = 480
A = SynthConfig(n=N, seed=5, bands=BANDS, size=8, pixel_scale=0.8, seeing=1.4,
                noise_scale=2.0, noise_seed=1, chunk=60)
B = SynthConfig(n=N, seed=5, bands=BANDS, size=16, pixel_scale=0.4, seeing=0.7,
                noise_scale=0.6, noise_seed=2, chunk=40)
GRID = {"low": 0.0, "high": 0.4, "n_bins": 40}


def _job(root, **model) -> JobSpec:
    return JobSpec.model_validate({
        "name": "a2b", "store": {"url": str(root / "a.zarr")}, "output": {"dir": str(root / "out")},
        "models": [{"name": "a2b", "kind": "translator", "target_store": str(root / "b.zarr"),
                    "width": 8, "depth": 2, "sample": 1024, **model}],
        "train": {"epochs": 4, "batch_size": 32, "lr": 3e-3, "patience": 10},
        "resources": {"actors": 2, "cpus_per_actor": 0.5, "batch_size": 64},
        "infer": {"objects_per_shard": 120}, "metrics": {"enabled": False}})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Surveys A and B of the same galaxies, and a gradient-loss translator A -> B."""
    root = tmp_path_factory.mktemp("translator")
    a = synthesize(str(root / "a.zarr"), A, parallel=False)
    synthesize(str(root / "b.zarr"), B, parallel=False)
    job = _job(root)
    [model] = train_job(job, a)
    return root, a, job, model


def _val_pixel_loss(checkpoint, a, b, trained: bool) -> float:
    """Pixel loss over every object of the checkpoint's network, or of a fresh one of the
    same config (untrained: the U-Net passes A's flux through)."""
    torch.manual_seed(0)
    net = build_network(checkpoint) if trained else get_kind("translator").build(
        checkpoint.config)
    net.eval()
    x = checkpoint.normalization.apply(a.read(0, N, labels=False).images)
    y = torch.from_numpy(b.read(0, N, labels=False).images)
    with torch.inference_mode():
        return float(net(x, y))


def _own_lines(stderr: str) -> list[str]:
    """The command's stderr lines, without what Ray forwards from earlier tests' workers
    (``(InferenceActor pid=..)``, ``(pid=..)`` and ``(raylet)`` lines, e.g. exit messages),
    coloured or not."""
    return [line for line in stderr.strip().splitlines()
            if not re.match(r"^(\x1b\[[\d;]*m)?\((\w+ )?(pid=\d+|raylet|gcs_server)", line)]


def test_training_takes_the_paired_surveys_cutouts_as_targets(trained):
    root, a, _, model = trained
    checkpoint = load_checkpoint(model.url)
    pair = checkpoint.config["pair"]
    assert pair["bands"] == list(BANDS) and (pair["height"], pair["width"]) == (16, 16)
    # the target survey's sky noise as its calibration states it (the stretch, the noise)
    truth = [open_store(str(root / "b.zarr")).attrs["calibration"]["noise"][b] for b in BANDS]
    np.testing.assert_allclose(pair["noise"], truth, rtol=1e-6)
    assert set(model.metrics["val"]) == {"mag_rmse_g", "mag_rmse_r", "mag_rmse_i",
                                         "colour_rmse"}
    b = open_store(str(root / "b.zarr"))
    untrained = _val_pixel_loss(checkpoint, a, b, trained=False)
    # B's own pixel noise is a floor neither reaches (about 0.4 here)
    assert _val_pixel_loss(checkpoint, a, b, trained=True) < 0.92 * untrained


def test_gradient_scales_too_coarse_or_repeated_are_refused_in_one_line(trained):
    root, a, _, _ = trained
    with pytest.raises(InvalidParameterError, match=r"scale 16 leaves no spatial gradient .* "
                       r"16x16 cutouts; use scales up to 8"):
        train_job(_job(root, name="coarse", scales=[1, 16]), a)
    with pytest.raises(ValidationError, match=r"scales must be distinct, got \[2, 2\]"):
        _job(root, scales=[2, 2])


def test_stores_of_other_objects_are_refused_as_a_pair(tmp_path):
    a = synthesize(str(tmp_path / "a.zarr"), A, parallel=False)
    synthesize(str(tmp_path / "b.zarr"), SynthConfig(**{**B.__dict__, "n": N - 40}),
               parallel=False)
    with pytest.raises(InvalidParameterError, match="does not list the same objects"):
        train_job(_job(tmp_path), a)


def test_a_survey_translated_on_actors_is_a_store_that_infer_reads(trained, ray_session):
    root, a, job, model = trained
    plan = plan_translation(job, a)
    result = run_translation(job, a, plan)
    assert result.complete and result.shards_run == len(plan.shards) == N // 120
    assert len({r.worker for r in result.reports}) >= 1
    store = open_store(plan.url)  # validated, complete
    b = open_store(str(root / "b.zarr"))
    assert tuple(store.bands) == BANDS and (store.layout.height, store.layout.width) == (16, 16)
    np.testing.assert_array_equal(store.read_column("object_id"), a.read_column("object_id"))
    translated = store.read(0, N, labels=False).images
    # the network's noise-free translation plus B's sky noise, each object's drawn from its
    # own stream: the same noise whatever shards and batches the actors cut the survey into
    checkpoint = load_checkpoint(model.url)
    with torch.inference_mode():
        clean = build_network(checkpoint).eval().flux(
            checkpoint.normalization.apply(a.read(0, N, labels=False).images)).numpy()
    noise = emulate_noise(np.zeros_like(clean), checkpoint.config["pair"]["noise"],
                          seed=checkpoint.config["seed"])
    np.testing.assert_allclose(translated - clean, noise, atol=1e-3 * float(np.abs(clean).max()))
    np.testing.assert_allclose((translated - clean).std(axis=(0, 2, 3)),
                               checkpoint.config["pair"]["noise"], rtol=0.05)
    # a photo-z model of survey B runs on the translated survey with no change
    save_checkpoint(seeded_checkpoint(b, "binned_density", ["redshift"], grid=GRID, width=8),
                    str(root / "zout/checkpoints/photoz.pt"))
    infer_job = JobSpec.model_validate({
        "name": "z", "store": {"url": plan.url}, "output": {"dir": str(root / "zout")},
        "models": [{"name": "photoz", "kind": "binned_density", "targets": ["redshift"],
                    "width": 8, "grid": GRID}], "metrics": {"enabled": False},
        "resources": {"actors": 1, "cpus_per_actor": 0.5}})
    assert run_inference(infer_job, store).complete
    table = read_catalog(str(root / "zout/catalog"))
    assert table.num_rows == N and np.isfinite(np.asarray(table.column("redshift_q50"))).all()


def test_a_rerun_writes_only_the_shards_an_interrupted_run_left(trained, tmp_path):
    """The first two shards' pixels are replaced by a sentinel and the last two are
    damaged and marked unwritten, as an interrupted run leaves them: the re-run rewrites
    exactly the last two, identically to the first run (seeded noise), and leaves the
    first two."""
    import zarr

    _, a, job, _ = trained
    url = str(tmp_path / "t.zarr")
    plan = plan_translation(job, a, url=url)
    run_translation(job, a, plan)
    first = open_store(url).read(0, N, labels=False).images
    group = zarr.open_group(url, mode="r+")
    group.attrs["complete"] = False
    group["images"][:240] = -1.0  # written before the interruption: must stay
    group["images"][240:] = -2.0  # half-written when it stopped: must be redone
    for shard in plan.shards[2:]:
        (tmp_path / "t.zarr" / "_written" / f"shard-{shard.index:06d}").unlink()
    result = run_translation(job, a, plan_translation(job, a, url=url))
    assert result.complete and (result.shards_run, result.shards_skipped) == (2, 2)
    again = open_store(url).read(0, N, labels=False).images
    assert (again[:240] == -1.0).all()
    np.testing.assert_array_equal(again[240:], first[240:])
    assert len(done_marks(url)) == len(plan.shards) + 1  # the columns' mark too


def test_an_output_of_another_model_is_refused_and_infer_names_translate(trained, tmp_path,
                                                                         capsys):
    _, a, job, _ = trained
    other = synthesize(str(tmp_path / "other.zarr"), SynthConfig(n=60, size=16, bands=BANDS,
                                                                seed=9), parallel=False)
    with pytest.raises(InvalidParameterError, match="not this model's translation"):
        plan_translation(job, a, url=other.url)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(job.model_dump_json())
    assert main(["infer", str(job_file)]) == 2
    err = _own_lines(capsys.readouterr().err)
    assert len(err) == 1 and "surveyproc translate" in err[0], err
    no_translator = job.model_dump(mode="json")
    no_translator["models"] = [{"name": "z", "kind": "binned_density", "targets": ["redshift"],
                                "width": 8, "grid": GRID}]
    job_file.write_text(JobSpec.model_validate(no_translator).model_dump_json())
    assert main(["translate", str(job_file)]) == 2
    err = _own_lines(capsys.readouterr().err)
    assert len(err) == 1 and "0 translator models" in err[0], err


def test_an_actor_refuses_a_translation_that_does_not_fit_the_output(trained, tmp_path):
    """The output laid out for another survey (8 x 8 cutouts, not the model's 16 x 16):
    the actor names the mismatch in one line before writing anything."""
    from surveyproc.infer.translate import TranslationProcessor
    from surveyproc.store.translated import create_translated

    _, a, job, _ = trained
    plan = plan_translation(job, a, url=str(tmp_path / "t.zarr"))
    create_translated(a, plan.url, {**plan.target, "height": 8, "width": 8})
    processor = TranslationProcessor(store_url=a.url, store_options=None,
                                     checkpoint=plan.checkpoint, out_url=plan.url,
                                     out_options=None, batch_size=64)
    with pytest.raises(ValueError, match=r"shape \(3, 16, 16\) do not fit store .*, whose "
                                         r"cutouts are \(3, 8, 8\)"):
        processor.process(plan.shards[0])
    assert not done_marks(plan.url)
