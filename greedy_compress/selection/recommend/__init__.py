"""Recommendations: per-layer ranks or ratios computed from the weights, with no evaluation.

``recommend_vbmf`` (decomposition schemes) returns a :class:`~greedy_compress.Selection`
ready for :func:`~greedy_compress.apply_selection`; ``recommend_slamp`` (filter pruning)
returns per-layer filter counts that turn into a selection once a pruning scheme is chosen;
``recommend_global_threshold`` prunes every layer by one threshold on a filter-pruning
scheme's layer-normalised importances and returns a :class:`~greedy_compress.Selection`.
"""

from __future__ import annotations

from greedy_compress.selection.recommend.global_threshold import recommend_global_threshold
from greedy_compress.selection.recommend.slamp import (
    LayerPruning,
    SlampRecommendation,
    lamp_scores,
    recommend_slamp,
)
from greedy_compress.selection.recommend.vbmf import (
    VBMFResult,
    calibrate_rank,
    evbmf,
    recommend_vbmf,
)

__all__ = [
    "LayerPruning",
    "SlampRecommendation",
    "VBMFResult",
    "calibrate_rank",
    "evbmf",
    "lamp_scores",
    "recommend_global_threshold",
    "recommend_slamp",
    "recommend_vbmf",
]
