"""Suffix-only evaluation: run the unchanged front of the network once per batch, only the
rest per candidate, several candidates side by side.

Four concerns, one module each: :mod:`.stages` cuts the traced graph per layer,
:mod:`.workers` runs candidates in threads, :mod:`.passes` scores several layers in one
pass over the data and keeps in-place writes out of the shared values, and :mod:`.scorer`
ties them to a :class:`~evaluators.BatchEvaluator`.
"""

from __future__ import annotations

from greedy_compress.dictionary.suffix.scorer import SuffixScorer
from greedy_compress.dictionary.suffix.stages import Stage, SuffixUnavailable, split_stages
from greedy_compress.dictionary.suffix.workers import default_workers

__all__ = ["Stage", "SuffixScorer", "SuffixUnavailable", "default_workers", "split_stages"]
