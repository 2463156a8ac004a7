"""Checkpoints round-trip exactly, are identified by content, and refuse what does not fit."""

from __future__ import annotations

import io

import pytest
import torch

from surveyproc.errors import (
    CheckpointMismatchError,
    CheckpointNotFoundError,
    InvalidParameterError,
)
from surveyproc.kinds import build_network, get_kind
from surveyproc.models import (
    Checkpoint,
    Normalization,
    TargetInfo,
    load_checkpoint,
    save_checkpoint,
)


def _checkpoint(seed: int = 0, kind: str = "sfnet", **config) -> Checkpoint:
    torch.manual_seed(seed)
    config = {"in_bands": 3, "n_targets": 1, "width": 8, **config}
    if kind == "sfnet":
        config.setdefault("k", 2)
    model = get_kind(kind).build(config)
    return Checkpoint(kind=kind, config=config, bands=["g", "r", "z"], image_size=[32, 32],
                      normalization=Normalization((0.01, 0.02, 0.03)),
                      targets=[TargetInfo("metallicity", "dex", 8.7, 0.1)],
                      state_dict=model.state_dict(), provenance={"seed": seed},
                      metrics={"val": {"rmse_metallicity": 0.07}})


@pytest.mark.parametrize("where", ["local", "memory"])
def test_round_trip_gives_identical_outputs(tmp_path, where):
    checkpoint = _checkpoint()
    url = str(tmp_path / "m.pt") if where == "local" else "memory://ckpt/test/m.pt"
    model_id = save_checkpoint(checkpoint, url)
    loaded = load_checkpoint(url)
    assert loaded.model_id == model_id == checkpoint.model_id
    assert loaded.targets == checkpoint.targets and loaded.bands == ["g", "r", "z"]
    assert loaded.normalization == checkpoint.normalization
    assert loaded.metrics == checkpoint.metrics and loaded.provenance == {"seed": 0}
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        before = build_network(checkpoint)(x)
        after = build_network(loaded)(x)
    assert torch.equal(before.prediction, after.prediction)
    assert torch.equal(before.act_idx, after.act_idx)


def test_model_id_follows_content():
    assert _checkpoint(0).model_id == _checkpoint(0).model_id
    assert _checkpoint(0).model_id != _checkpoint(1).model_id
    other_targets = _checkpoint(0)
    other_targets.targets = [TargetInfo("metallicity", "dex", 8.6, 0.1)]
    assert other_targets.model_id != _checkpoint(0).model_id


def test_store_with_other_bands_or_size_is_refused():
    checkpoint = _checkpoint()
    checkpoint.check_store(("g", "r", "z"), (32, 32), "store s.zarr")
    with pytest.raises(CheckpointMismatchError, match=r"trained on bands g,r,z but store s.zarr "
                                                      r"has g,r,i"):
        checkpoint.check_store(("g", "r", "i"), (32, 32), "store s.zarr")
    with pytest.raises(CheckpointMismatchError, match=r"trained on 32x32 cutouts but store "
                                                      r"s\.zarr has 64x64"):
        checkpoint.check_store(("g", "r", "z"), (64, 64), "store s.zarr")


def test_weights_that_do_not_fit_the_architecture_are_refused():
    checkpoint = _checkpoint()
    checkpoint.config = {**checkpoint.config, "width": 16}
    with pytest.raises(CheckpointMismatchError, match="weights do not fit its architecture"):
        build_network(checkpoint)


def test_foreign_files_are_refused_without_unpickling(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    buffer = io.BytesIO()
    torch.save({"meta": Payload()}, buffer)
    (tmp_path / "evil.pt").write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointMismatchError, match=r"not loaded \(weights-only loading"):
        load_checkpoint(str(tmp_path / "evil.pt"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointMismatchError, match="not a surveyproc checkpoint"):
        load_checkpoint(str(tmp_path / "junk.pt"))
    with pytest.raises(CheckpointNotFoundError, match="file not found"):
        load_checkpoint(str(tmp_path / "absent.pt"))


def test_registry_names_unknown_kinds_and_bad_configs():
    with pytest.raises(InvalidParameterError, match="unknown model kind 'sfnett'; known kinds: "
                       "binned_density, clap, deep_ensemble, dense_cnn, mi_decomposition, "
                       "mixture_density, pca, sfnet"):
        get_kind("sfnett")
    checkpoint = _checkpoint()
    checkpoint.config = {"in_bands": 3, "n_targets": 1}  # no k
    with pytest.raises(InvalidParameterError, match="model kind 'sfnet': bad configuration"):
        build_network(checkpoint)
