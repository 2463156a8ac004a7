"""A model kind defined here, in one file, and run through ``surveyproc train``, ``infer``
and ``aggregate`` with its own setting, its own catalog column, its own statistics and
its own report section -- with no change under ``surveyproc/``.

The job file names this file in ``plugins:``; the driver, every Ray actor and every
Dask worker import it from there.  The kind registers only when loaded that way, so
collecting the tests does not change the registry other tests see.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from pydantic import Field
from torch import nn

from surveyproc.catalog.schema import ModelColumns
from surveyproc.kinds import ModelKind, ModelSettings, ReportContext, register_kind
from surveyproc.kinds.columns import point_columns, point_outputs
from surveyproc.kinds.tasks import RegressionTask
from surveyproc.models.checkpoint import Checkpoint, TargetInfo

KIND = "toy_brightness"
COLUMN = "toy_brightness"


class BrightnessSettings(ModelSettings):
    """A linear fit of the targets to each band's mean normalised pixel."""

    scale: float = Field(1.0, gt=0, description="Factor of the brightness column.")


@dataclass
class BrightnessOutput:
    prediction: torch.Tensor
    brightness: torch.Tensor


class Brightness(nn.Module):
    def __init__(self, in_bands: int, n_targets: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.linear = nn.Linear(in_bands, n_targets)

    def forward(self, x: torch.Tensor) -> BrightnessOutput:
        means = x.mean(dim=(2, 3))
        return BrightnessOutput(self.linear(means), self.scale * means.sum(dim=1))


class BrightnessAggregator:
    columns: ClassVar[list[str]] = [COLUMN]

    def partial(self, frame, labels: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = frame[COLUMN].to_numpy(dtype=np.float64)
        return {"n": np.array([len(values)]), "sum": np.array([values.sum()])}

    def finish(self, total: dict[str, np.ndarray]) -> dict[str, float]:
        return {"n": float(total["n"][0]), "mean": float(total["sum"][0] / total["n"][0])}


class BrightnessKind(ModelKind):
    name = KIND
    description = "mean pixel per band -> linear (a toy plug-in)"
    settings = BrightnessSettings

    def network_config(self, settings: ModelSettings, bands: Sequence[str]) -> dict[str, Any]:
        assert isinstance(settings, BrightnessSettings)
        return {"in_bands": len(bands), "n_targets": len(settings.targets),
                "scale": settings.scale}

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        return Brightness(config["in_bands"], config["n_targets"], config["scale"])

    def task(self, config: Mapping[str, Any], targets: list[TargetInfo]) -> RegressionTask:
        return RegressionTask(targets)

    def columns(self, name: str, checkpoint: Checkpoint) -> ModelColumns:
        return point_columns(name, checkpoint, extra_columns=((COLUMN, "float32"),))

    def infer(self, module: nn.Module, x: torch.Tensor, columns: ModelColumns,
              checkpoint: Checkpoint, truth: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
        out = module(x)
        return {**point_outputs(out.prediction.float().cpu().numpy(), checkpoint, columns),
                COLUMN: out.brightness.float().cpu().numpy()}

    def aggregator(self, columns: ModelColumns) -> BrightnessAggregator:
        return BrightnessAggregator()

    def report_section(self, context: ReportContext) -> str:
        stats = context.aggregate
        context.summary["mean_brightness"] = stats["mean"]
        return (f"<h2>Toy brightness of {context.columns.name}</h2>"
                f"<p>mean {stats['mean']:.6g} over {int(stats['n'])} galaxies</p>")


if __name__.startswith("surveyproc_plugin_"):  # loaded as a job's plug-in
    register_kind(BrightnessKind)


@pytest.mark.slow
def test_a_plugin_kind_runs_through_train_infer_and_aggregate(tmp_path, ray_session, capsys):
    from distributed import LocalCluster

    from surveyproc.catalog import read_catalog
    from surveyproc.cli import main
    from surveyproc.kinds import registered_kinds
    from surveyproc.models import load_checkpoint
    from surveyproc.store import open_store

    assert KIND not in registered_kinds()  # not until a job names this file
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        job = tmp_path / "job.yaml"
        job.write_text(f"""
name: toy
plugins: [{Path(__file__).resolve()}]
store:
  url: {tmp_path / 'survey.zarr'}
  synth: {{n: 600, size: 16, seed: 5, chunk: 100}}
output: {{dir: {tmp_path / 'out'}}}
models:
  - {{name: bright, kind: {KIND}, targets: [redshift], scale: 2.5}}
train: {{epochs: 2, batch_size: 64}}
resources: {{actors: 1, cpus_per_actor: 0.5, batch_size: 64}}
infer: {{objects_per_shard: 200}}
dask: {{address: {cluster.scheduler_address}}}
metrics: {{enabled: false}}
""")
        for command in ("train", "infer", "aggregate"):
            assert main([command, str(job)]) == 0, capsys.readouterr().err
    assert KIND in registered_kinds()

    table = read_catalog(str(tmp_path / "out/catalog"))
    assert {COLUMN, "redshift_mean", "redshift_q84"} <= set(table.column_names)
    checkpoint = load_checkpoint(str(tmp_path / "out/checkpoints/bright.pt"))
    store = open_store(str(tmp_path / "survey.zarr"))
    x = checkpoint.normalization.apply(store.read(0, store.n_objects).images)
    expected = 2.5 * x.mean(dim=(2, 3)).sum(dim=1).numpy()
    np.testing.assert_allclose(table.column(COLUMN).to_numpy(), expected, rtol=1e-4, atol=1e-5)

    report = tmp_path / "out/report"
    assert "Toy brightness of bright" in (report / "index.html").read_text()
    summary = json.loads((report / "summary.json").read_text())
    assert summary["models"]["bright"]["mean_brightness"] == pytest.approx(expected.mean(),
                                                                           rel=1e-4)
    assert "redshift" in summary["calibration"]
