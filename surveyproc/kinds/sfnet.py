"""Kind ``sfnet`` (Wu, SFNet): ResNet-18 -> ReLU -> top-k -> linear head.

Everything SFNet-specific lives here: the ``k`` setting, the sparse
activation columns, the readouts stored with the checkpoint (feature
frequencies, each target's linear equation, the AGN classifier on the most
frequent features) and the report's equation section.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from ..catalog.schema import ModelColumns
from ..models.checkpoint import Checkpoint, TargetInfo
from ..models.readouts import head_equations, sfnet_readouts
from ..models.resnet import ResNet18
from ..models.sfnet import SFNet
from .base import ModelKind, ModelSettings, ReportContext, TrainingData
from .columns import point_columns, point_outputs
from .registry import register_kind
from .tasks import RegressionTask

__all__ = ["SFNetKind", "SFNetSettings"]

#: Features shown in the report's equations.
EQUATION_FEATURES = 6


class SFNetSettings(ModelSettings):
    """SFNet: only the ``k`` largest features of each galaxy reach the linear head."""

    k: int = Field(ge=1, description="Active features per galaxy.")


@register_kind
class SFNetKind(ModelKind):
    """Point estimates plus each galaxy's k active features (``act_idx``, ``act_val``)."""

    name = "sfnet"
    description = "ResNet-18 -> ReLU -> top-k -> linear (Wu, SFNet)"
    settings = SFNetSettings

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        return SFNet(config["in_bands"], config["n_targets"], config["k"],
                     config.get("width", 64))

    def task(self, config: Mapping[str, Any], targets: list[TargetInfo]) -> RegressionTask:
        return RegressionTask(targets)

    @torch.inference_mode()
    def readouts(self, model: nn.Module, data: TrainingData) -> dict[str, Any]:
        """Feature frequencies, equations and the AGN classifier on the validation split."""
        assert isinstance(model, SFNet)
        model.eval()
        idx, val, ids = [], [], []
        for x, _, object_id in data.batches("val"):
            out = model(x)
            idx.append(out.act_idx.numpy())
            val.append(out.act_val.numpy())
            ids.append(object_id)
        agn = data.label("agn", np.concatenate(ids))
        return sfnet_readouts(np.concatenate(idx), np.concatenate(val),
                              model.head.weight.detach().numpy(),
                              model.head.bias.detach().numpy(), data.targets,
                              None if agn is None else agn > 0.5)

    def columns(self, name: str, checkpoint: Checkpoint) -> ModelColumns:
        config = checkpoint.config
        return point_columns(name, checkpoint, k=int(config["k"]),
                             n_features=ResNet18.features_for(config.get("width", 64)))

    def infer(self, module: nn.Module, x: torch.Tensor, columns: ModelColumns,
              checkpoint: Checkpoint, truth: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
        result = module(x)
        out = point_outputs(result.prediction.float().cpu().numpy(), checkpoint, columns)
        out[columns.act_idx] = result.act_idx.cpu().numpy().astype(np.int16)
        out[columns.act_val] = result.act_val.float().cpu().numpy()
        return out

    def report_section(self, context: ReportContext) -> str | None:
        """The head's equation of each target in the most frequent features."""
        if context.checkpoint is None or context.features is None:
            return None
        state = context.checkpoint.state_dict
        equations = head_equations(state["head.weight"].numpy(), state["head.bias"].numpy(),
                                   context.checkpoint.targets)
        top = np.array(context.features.top(EQUATION_FEATURES), dtype=np.int64)
        rows, lines = [], []
        for equation in equations:
            terms = equation.terms(top)
            text = f"{equation.target} = {equation.intercept:.4g} " + " ".join(
                f"{'+' if w >= 0 else '-'} {abs(w):.3g} f{f}" for f, w in terms)
            lines.append(f"<pre>{html.escape(text)}</pre>")
            rows.append({"target": equation.target, "intercept": equation.intercept,
                         "terms": [{"feature": f, "weight": w} for f, w in terms]})
        name = context.columns.name
        (context.out_dir / f"equations_{name}.json").write_text(json.dumps(rows, indent=2))
        context.summary["equations"] = rows
        return ("<h3>The head's equation in the most frequent features</h3>"
                "<p>(activations f<i>n</i> are zero unless among the galaxy's top-k)</p>"
                + "".join(lines))
