"""Every error greedy-compress raises on purpose derives from :class:`GreedyCompressError`.

The CLI turns these into one-line messages; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "DecompositionError",
    "EvaluatorResultError",
    "ExportError",
    "GraphTraceError",
    "GreedyCompressError",
    "InvalidParameterError",
    "ModelInputError",
    "NoCompressibleLayerError",
    "ScoresFormatError",
    "ScoresMismatchError",
    "SelectionMismatchError",
    "TargetUnreachableError",
]


class GreedyCompressError(Exception):
    """Base class of every error raised on purpose by greedy-compress."""


class InvalidParameterError(GreedyCompressError, ValueError):
    """Raised when an argument has a bad value; the message names the value and what is allowed."""


class NoCompressibleLayerError(GreedyCompressError, ValueError):
    """Raised when a model has no layer the chosen scheme can compress (after ``ignore``).

    The message counts the layers per reason; ``skipped`` maps every layer to its reason.
    """

    skipped: dict[str, str]

    def __init__(self, message: str, skipped: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.skipped = dict(skipped or {})


class TargetUnreachableError(GreedyCompressError, ValueError):
    """Raised when even the smallest candidates cannot meet the target; states what is reachable."""


class ScoresFormatError(GreedyCompressError, ValueError):
    """Raised when an eval-score file is not valid JSON of a format version we can read."""


class ScoresMismatchError(GreedyCompressError, ValueError):
    """Raised when an eval-score file was made for another model or setting; names the fields."""


class DecompositionError(GreedyCompressError, ArithmeticError):
    """Raised when a tensor decomposition gives no usable fit; names the layer shape and rank."""


class GraphTraceError(GreedyCompressError, ValueError):
    """Raised when torch.fx cannot trace a model that a pruning scheme needs; names the module."""


class ExportError(GreedyCompressError, ValueError):
    """Raised when a model cannot be exported as asked (a layer whose quantized weights
    have no integer grid, an uncalibrated activation) or the exported ONNX file does not
    reproduce the model within the tolerance; names the layer or the difference."""


class EvaluatorResultError(GreedyCompressError, TypeError):
    """Raised when an evaluator returns something that is not a number; shows what it was."""


class ModelInputError(GreedyCompressError, ValueError):
    """Raised when the model fails on the example input (wrong shape, dtype or device)."""


class SelectionMismatchError(GreedyCompressError, ValueError):
    """Raised when a selection does not fit the model it is applied to (another model, an
    unknown layer, a rank or channel index out of range); names the field."""
