"""Phase 1, the eval-score dictionary: the model's score with each layer compressed alone
at each candidate, built once (resumable, shardable, suffix-only) and saved as JSON.

Example:
    >>> scores = build_eval_scores(model, evaluator, candidates=4, input_shape=(1, 1, 8, 8),
    ...                            progress=False)
    >>> scores.is_complete, scores.cost_metric
    (True, 'mac')
"""

from __future__ import annotations

from greedy_compress.dictionary.build import build_eval_scores
from greedy_compress.dictionary.candidates import DEFAULT_NUM_CANDIDATES, make_candidates
from greedy_compress.dictionary.evaluator import Evaluator, run_evaluator
from greedy_compress.dictionary.mixed import MIXED_SCHEME, combine_scores
from greedy_compress.dictionary.scores import EvalScores, LayerScores, ScoreEntry
from greedy_compress.dictionary.settings import BuildOptions, BuildSettings
from greedy_compress.dictionary.two_level import build_two_level_scores

__all__ = [
    "DEFAULT_NUM_CANDIDATES",
    "MIXED_SCHEME",
    "BuildOptions",
    "BuildSettings",
    "EvalScores",
    "Evaluator",
    "LayerScores",
    "ScoreEntry",
    "build_eval_scores",
    "build_two_level_scores",
    "combine_scores",
    "make_candidates",
    "run_evaluator",
]
