"""The model as the rest of the pipeline sees it: compressible layers by name, costs, tracing,
sampled activations, module swaps and hashes."""

from __future__ import annotations

from greedy_compress.model.cost import COST_METRICS, Cost, CostMetric, count_macs, measure_cost
from greedy_compress.model.profile import LayerInfo, ModelProfile, make_example_input, profile_model

__all__ = [
    "COST_METRICS",
    "Cost",
    "CostMetric",
    "LayerInfo",
    "ModelProfile",
    "count_macs",
    "make_example_input",
    "measure_cost",
    "profile_model",
]
