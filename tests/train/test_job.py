"""Training from a job file on a small synthetic store: SFNet learns, checkpoints are reused."""

from __future__ import annotations

import numpy as np
import pytest

from surveyproc.cli import main
from surveyproc.kinds import build_network
from surveyproc.models import load_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def job_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    path = root / "job.yaml"
    path.write_text(f"""
name: learn
store:
  url: {root / 'survey.zarr'}
  synth: {{n: 3000, size: 32, seed: 7, chunk: 250}}
output: {{dir: {root / 'out'}}}
models:
  - {{name: sfnet_mass, kind: sfnet, k: 4, targets: [log_mstar]}}
train: {{epochs: 5, batch_size: 64, lr: 0.002, patience: 5}}
""")
    return path


def test_sfnet_learns_a_label_from_pixels(job_file, capsys, ray_session):
    assert main(["train", str(job_file)]) == 0
    out = capsys.readouterr().out
    assert "sfnet_mass: trained, model " in out
    checkpoint = load_checkpoint(str(job_file.parent / "out/checkpoints/sfnet_mass.pt"))
    std = checkpoint.targets[0].std
    rmse = checkpoint.metrics["val"]["rmse_log_mstar"]
    assert rmse < 0.6 * std, (rmse, std)  # learned, not the mean
    assert checkpoint.metrics["test"]["rmse_log_mstar"] < 0.6 * std
    assert checkpoint.bands == ["g", "r", "i", "z"] and checkpoint.image_size == [32, 32]
    assert checkpoint.config["k"] == 4
    # the top-k layer really is k-sparse on the store's galaxies
    model = build_network(checkpoint)
    from surveyproc.store import open_store

    store = open_store(str(job_file.parent / "survey.zarr"))
    x = checkpoint.normalization.apply(store.read(0, 64).images)
    out_model = model(x)
    assert (out_model.features != 0).sum(dim=1).max() <= 4
    assert np.isfinite(out_model.prediction.detach().numpy()).all()


def test_rerun_keeps_an_up_to_date_checkpoint(job_file, capsys, ray_session):
    assert main(["train", str(job_file)]) == 0
    assert "sfnet_mass: up to date" in capsys.readouterr().out


def test_bad_model_sections_are_one_line(job_file, capsys):
    assert main(["train", str(job_file), "--set", "models=[{name: a, kind: sfnet, "
                 "targets: [metallicity]}]"]) == 2
    assert "required key 'models.0.k' is missing" in capsys.readouterr().err
    assert main(["train", str(job_file), "--set", "models=[{name: a, kind: sfnet, k: 2, "
                 "targets: [mass]}]"]) == 2
    assert "unknown target 'mass'" in capsys.readouterr().err
