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

from greedy_compress._version import __version__
from greedy_compress.api import compress, select
from greedy_compress.apply import apply_selection, load_compressed
from greedy_compress.dictionary import (
    BuildSettings,
    EvalScores,
    LayerScores,
    ScoreEntry,
    build_eval_scores,
    combine_scores,
    make_candidates,
)
from greedy_compress.errors import (
    DecompositionError,
    GraphTraceError,
    GreedyCompressError,
    InvalidParameterError,
    NoCompressibleLayerError,
    ScoresFormatError,
    ScoresMismatchError,
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
    get_solver,
    manual_selection,
    predicted_score,
    recommend_slamp,
    recommend_vbmf,
    register_solver,
    repair_selection,
)

__all__ = [
    "AIMET_PIPELINE",
    "BuildSettings",
    "CompressionReport",
    "Cost",
    "DecompositionError",
    "EvalScores",
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
    "ModelProfile",
    "NoCompressibleLayerError",
    "PipelineReport",
    "RepairResult",
    "Scheme",
    "ScoreEntry",
    "ScoresFormatError",
    "ScoresMismatchError",
    "Selection",
    "Solver",
    "TargetUnreachableError",
    "__version__",
    "apply_selection",
    "available_layers",
    "available_schemes",
    "available_solvers",
    "build_eval_scores",
    "build_report",
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
    "recommend_slamp",
    "recommend_vbmf",
    "register_scheme",
    "register_solver",
    "repair_selection",
    "select",
]
