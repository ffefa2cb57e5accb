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
from greedy_compress.dictionary.build import build_eval_scores
from greedy_compress.dictionary.candidates import make_candidates
from greedy_compress.dictionary.mixed import combine_scores
from greedy_compress.dictionary.scores import EvalScores, LayerScores, ScoreEntry
from greedy_compress.errors import (
    DecompositionError,
    GreedyCompressError,
    InvalidParameterError,
    NoCompressibleLayerError,
    ScoresFormatError,
    ScoresMismatchError,
    TargetUnreachableError,
)
from greedy_compress.model.cost import Cost, count_macs, measure_cost
from greedy_compress.model.profile import LayerInfo, ModelProfile, profile_model
from greedy_compress.pipeline import AIMET_PIPELINE, PipelineReport, compress_pipeline
from greedy_compress.report.report import CompressionReport, LayerReport
from greedy_compress.schemes import Scheme, available_schemes, get_scheme, register_scheme
from greedy_compress.selection.manual import available_layers, manual_selection
from greedy_compress.selection.recommend import recommend_slamp, recommend_vbmf
from greedy_compress.selection.repair import (
    MaxDrop,
    RepairResult,
    predicted_score,
    repair_selection,
)
from greedy_compress.selection.solvers import (
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
