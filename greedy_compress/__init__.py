"""greedy-compress: automatic per-layer compression ratio selection for PyTorch models.

The pipeline has three phases, one folder each: the eval-score dictionary
(:mod:`greedy_compress.dictionary`), the selection (:mod:`greedy_compress.selection`) and the
compressed model (:mod:`greedy_compress.apply`); :func:`compress` chains them.

Example:
    >>> import greedy_compress as gc
    >>> small, report = gc.compress(model, evaluator, target=0.5, input_shape=(1, 1, 8, 8),
    ...                             progress=False)
    >>> report.achieved_ratio <= 0.5
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from greedy_compress._version import __version__

# Names are imported on first use: `import greedy_compress` (and the command line, which
# sets OMP_WAIT_POLICY before torch starts) does not import torch until it is needed.
_EXPORTS = {
    "AIMET_PIPELINE": "greedy_compress.pipeline",
    "BuildSettings": "greedy_compress.dictionary",
    "Calibration": "greedy_compress.model.statistics",
    "CompressionReport": "greedy_compress.report",
    "Cost": "greedy_compress.model",
    "DecompositionError": "greedy_compress.errors",
    "EvalScores": "greedy_compress.dictionary",
    "EvaluatorResultError": "greedy_compress.errors",
    "GraphTraceError": "greedy_compress.errors",
    "GreedyCompressError": "greedy_compress.errors",
    "GreedySolver": "greedy_compress.selection",
    "InvalidParameterError": "greedy_compress.errors",
    "KnapsackSolver": "greedy_compress.selection",
    "LayerChoice": "greedy_compress.selection",
    "LayerInfo": "greedy_compress.model",
    "LayerReport": "greedy_compress.report",
    "LayerScores": "greedy_compress.dictionary",
    "MaxDrop": "greedy_compress.selection",
    "ModelInputError": "greedy_compress.errors",
    "ModelProfile": "greedy_compress.model",
    "NoCompressibleLayerError": "greedy_compress.errors",
    "PipelineReport": "greedy_compress.pipeline",
    "RepairResult": "greedy_compress.selection",
    "Scheme": "greedy_compress.schemes",
    "ScoreEntry": "greedy_compress.dictionary",
    "ScoresFormatError": "greedy_compress.errors",
    "ScoresMismatchError": "greedy_compress.errors",
    "Selection": "greedy_compress.selection",
    "SelectionMismatchError": "greedy_compress.errors",
    "Solver": "greedy_compress.selection",
    "TargetUnreachableError": "greedy_compress.errors",
    "apply_selection": "greedy_compress.apply",
    "available_layers": "greedy_compress.selection",
    "available_schemes": "greedy_compress.schemes",
    "available_solvers": "greedy_compress.selection",
    "check_end_to_end": "greedy_compress.selection",
    "build_eval_scores": "greedy_compress.dictionary",
    "build_two_level_scores": "greedy_compress.dictionary",
    "build_report": "greedy_compress.report",
    "combine_scores": "greedy_compress.dictionary",
    "compress": "greedy_compress.api",
    "compress_pipeline": "greedy_compress.pipeline",
    "count_macs": "greedy_compress.model",
    "get_scheme": "greedy_compress.schemes",
    "get_solver": "greedy_compress.selection",
    "load_compressed": "greedy_compress.apply",
    "make_candidates": "greedy_compress.dictionary",
    "manual_selection": "greedy_compress.selection",
    "measure_cost": "greedy_compress.model",
    "predicted_score": "greedy_compress.selection",
    "profile_model": "greedy_compress.model",
    "recommend_global_threshold": "greedy_compress.selection",
    "recommend_slamp": "greedy_compress.selection",
    "recommend_vbmf": "greedy_compress.selection",
    "register_scheme": "greedy_compress.schemes",
    "register_solver": "greedy_compress.selection",
    "repair_selection": "greedy_compress.selection",
    "select": "greedy_compress.api",
}

if TYPE_CHECKING:
    from greedy_compress.api import compress, select
    from greedy_compress.apply import apply_selection, load_compressed
    from greedy_compress.dictionary import (
        BuildSettings,
        EvalScores,
        LayerScores,
        ScoreEntry,
        build_eval_scores,
        build_two_level_scores,
        combine_scores,
        make_candidates,
    )
    from greedy_compress.errors import (
        DecompositionError,
        EvaluatorResultError,
        GraphTraceError,
        GreedyCompressError,
        InvalidParameterError,
        ModelInputError,
        NoCompressibleLayerError,
        ScoresFormatError,
        ScoresMismatchError,
        SelectionMismatchError,
        TargetUnreachableError,
    )
    from greedy_compress.model import (
        Cost,
        LayerInfo,
        ModelProfile,
        count_macs,
        measure_cost,
        profile_model,
    )
    from greedy_compress.model.statistics import Calibration
    from greedy_compress.pipeline import AIMET_PIPELINE, PipelineReport, compress_pipeline
    from greedy_compress.report import CompressionReport, LayerReport, build_report
    from greedy_compress.schemes import Scheme, available_schemes, get_scheme, register_scheme
    from greedy_compress.selection import (
        GreedySolver,
        KnapsackSolver,
        LayerChoice,
        MaxDrop,
        RepairResult,
        Selection,
        Solver,
        available_layers,
        available_solvers,
        check_end_to_end,
        get_solver,
        manual_selection,
        predicted_score,
        recommend_global_threshold,
        recommend_slamp,
        recommend_vbmf,
        register_solver,
        repair_selection,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'greedy_compress' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AIMET_PIPELINE",
    "BuildSettings",
    "Calibration",
    "CompressionReport",
    "Cost",
    "DecompositionError",
    "EvalScores",
    "EvaluatorResultError",
    "GraphTraceError",
    "GreedyCompressError",
    "GreedySolver",
    "InvalidParameterError",
    "KnapsackSolver",
    "LayerChoice",
    "LayerInfo",
    "LayerReport",
    "LayerScores",
    "MaxDrop",
    "ModelInputError",
    "ModelProfile",
    "NoCompressibleLayerError",
    "PipelineReport",
    "RepairResult",
    "Scheme",
    "ScoreEntry",
    "ScoresFormatError",
    "ScoresMismatchError",
    "Selection",
    "SelectionMismatchError",
    "Solver",
    "TargetUnreachableError",
    "__version__",
    "apply_selection",
    "available_layers",
    "available_schemes",
    "available_solvers",
    "build_eval_scores",
    "build_report",
    "build_two_level_scores",
    "check_end_to_end",
    "combine_scores",
    "compress",
    "compress_pipeline",
    "count_macs",
    "get_scheme",
    "get_solver",
    "load_compressed",
    "make_candidates",
    "manual_selection",
    "measure_cost",
    "predicted_score",
    "profile_model",
    "recommend_global_threshold",
    "recommend_slamp",
    "recommend_vbmf",
    "register_scheme",
    "register_solver",
    "repair_selection",
    "select",
]
