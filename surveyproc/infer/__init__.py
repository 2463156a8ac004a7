"""Inference: shards of the store through Ray actors into the catalog."""

from .engine import InferPlan, InferResult, plan_inference, run_inference
from .estimate import Estimator, model_columns
from .shard import ShardProcessor, ShardReport

__all__ = [
    "Estimator",
    "InferPlan",
    "InferResult",
    "ShardProcessor",
    "ShardReport",
    "model_columns",
    "plan_inference",
    "run_inference",
]
