"""greedy-compress: automatic per-layer compression ratio selection for PyTorch models.

Example:
    >>> import greedy_compress as gc
    >>> small, report = gc.compress(model, evaluator, target=0.5,
    ...                             input_shape=(1, 3, 32, 32))  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from greedy_compress.api import build_report, compress, select
from greedy_compress.apply import apply_selection, load_compressed
from greedy_compress.candidates import make_candidates
from greedy_compress.cost import Cost, count_macs, measure_cost
from greedy_compress.exceptions import (
    DecompositionError,
    GreedyCompressError,
    InvalidParameterError,
    NoCompressibleLayerError,
    ScoresFormatError,
    ScoresMismatchError,
    TargetUnreachableError,
)
from greedy_compress.layers import LayerInfo, ModelProfile, profile_model
from greedy_compress.mixed import combine_scores
from greedy_compress.pipeline import AIMET_PIPELINE, PipelineReport, compress_pipeline
from greedy_compress.recommend import recommend_slamp, recommend_vbmf
from greedy_compress.repair import MaxDrop, RepairResult, predicted_score, repair_selection
from greedy_compress.report import CompressionReport, LayerReport
from greedy_compress.schemes import Scheme, available_schemes, get_scheme, register_scheme
from greedy_compress.scores import EvalScores, LayerScores, ScoreEntry
from greedy_compress.search import build_eval_scores
from greedy_compress.solvers import (
    GreedySolver,
    KnapsackSolver,
    Selection,
    Solver,
    available_solvers,
    get_solver,
    register_solver,
)

__all__ = [
    "AIMET_PIPELINE",
    "CompressionReport",
    "Cost",
    "DecompositionError",
    "EvalScores",
    "GreedyCompressError",
    "GreedySolver",
    "InvalidParameterError",
    "KnapsackSolver",
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
