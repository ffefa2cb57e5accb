"""Mixed-scheme dictionaries: several schemes' candidates for the same layers in one.

Build one dictionary per scheme on the same model, evaluator and settings, then combine them;
every solver then picks a scheme *and* a rank per layer, and :func:`apply_selection` builds
each layer with its own scheme. The combined dictionary is an ordinary :class:`EvalScores`
whose scheme is ``"mixed"`` and whose entries each name their scheme, so it saves, loads and
solves like any other.

Latency dictionaries combine too. Each build timed the original layers and the model anew,
so each layer keeps the measurement of the first dictionary that has it (rescaled by the
two builds' model latencies when that is not the first dictionary), and every candidate's
latency is moved onto it: a candidate was measured as a ratio to its original layer, timed
next to it, and that ratio is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from greedy_compress._util.constraints import bad_parameter
from greedy_compress.dictionary.scores import EvalScores, LayerScores
from greedy_compress.errors import ScoresMismatchError
from greedy_compress.model.cost import Cost

__all__ = ["MIXED_SCHEME", "combine_scores"]

MIXED_SCHEME = "mixed"

# Fingerprint fields allowed to differ between the dictionaries combined: the scheme is the
# point, and each scheme may use its own candidate ratios.
_PER_SCHEME_FIELDS = ("scheme", "candidates", "scheme_settings")


def _merge_order(orders: Sequence[Sequence[str]]) -> list[str]:
    """Union of several network-ordered name lists, keeping each list's order."""
    merged: list[str] = []
    for order in orders:
        previous = -1
        for name in order:
            if name in merged:
                previous = merged.index(name)
            else:
                merged.insert(previous + 1, name)
                previous += 1
    return merged


def _analytic(cost: Cost) -> Cost:
    return dataclasses.replace(cost, latency_ns=None)  # each build measures latency anew


def _rescaled(cost: Cost, own_original: Cost, original_ns: int | None) -> Cost:
    """``cost`` with its latency relative to ``own_original`` moved onto ``original_ns``."""
    if cost.latency_ns is None or original_ns is None or not own_original.latency_ns:
        return cost
    return dataclasses.replace(
        cost, latency_ns=round(cost.latency_ns * original_ns / own_original.latency_ns)
    )


def _scaled(cost: Cost, own: EvalScores, first: EvalScores) -> Cost:
    """``cost`` of ``own``'s build in the first build's time scale (model latency ratio)."""
    mine, theirs = own.model_cost.latency_ns, first.model_cost.latency_ns
    if cost.latency_ns is None or not mine or theirs is None:
        return cost
    return dataclasses.replace(cost, latency_ns=round(cost.latency_ns * theirs / mine))


def combine_scores(scores: Sequence[EvalScores], *, baseline_tolerance: float = 1e-6) -> EvalScores:
    """One dictionary holding the entries of several single-scheme dictionaries.

    Args:
        scores: complete dictionaries built on the same model, evaluator, cost metric,
            multiplicity and input shape, each with a different scheme.
        baseline_tolerance: largest allowed difference between their baseline scores (they
            evaluate the same uncompressed model; a noisy evaluator may differ slightly).

    Returns:
        An :class:`EvalScores` with scheme ``"mixed"``; each entry names its scheme.

    Raises:
        InvalidParameterError: fewer than two dictionaries, a scheme repeated, an incomplete
            or already mixed dictionary.
        ScoresMismatchError: the dictionaries were made for different models or settings.

    Example:
        >>> both = [build_eval_scores(model, evaluator, scheme=s, candidates=4,
        ...                           input_shape=(1, 1, 8, 8), progress=False)
        ...         for s in ("spatial_svd", "weight_svd")]
        >>> mixed = combine_scores(both)
        >>> selection = select(mixed, target=0.5, solver="knapsack")
        >>> mixed.scheme, {c.scheme for c in selection.choices.values()} <= {"spatial_svd",
        ...                                                                 "weight_svd"}
        ('mixed', True)
    """
    owner = "combine_scores"
    scores = list(scores)
    if len(scores) < 2 or not all(isinstance(s, EvalScores) for s in scores):
        raise bad_parameter("scores", owner, "a sequence of at least two EvalScores", scores)
    names = [s.scheme for s in scores]
    if MIXED_SCHEME in names or len(set(names)) != len(names):
        raise bad_parameter(
            "scores", owner, "dictionaries of distinct single schemes", f"schemes {names}"
        )
    incomplete = [s.scheme for s in scores if not s.is_complete]
    if incomplete:
        raise bad_parameter("scores", owner, "complete dictionaries", f"incomplete {incomplete}")
    interacting = [s.scheme for s in scores if s.exact_costs is not None]
    if interacting:
        # A pruned layer changes its neighbours' shapes, so another scheme's candidates for
        # those neighbours (scored on the unpruned model) would no longer describe them.
        raise bad_parameter(
            "scores",
            owner,
            "dictionaries of schemes whose layers are independent (not pruning)",
            f"schemes {interacting}",
        )

    for one in scores:
        shared = one.fingerprint.get("scheme_settings", {}).get("shared_input", {})
        followers = {member for members in shared.values() for member in members[1:]}
        clash = sorted({n for o in scores if o is not one for n in o.layers if n in followers})
        if clash:
            # Such layers are quantized with their group's first layer in one dictionary;
            # another scheme compressing them alone would change them twice.
            raise bad_parameter(
                "scores",
                owner,
                "dictionaries whose layers do not overlap a shared activation quantizer",
                f"{one.scheme} decides {clash} with another layer",
            )
    first = scores[0]
    shared = {k: v for k, v in first.fingerprint.items() if k not in _PER_SCHEME_FIELDS}
    for other in scores[1:]:
        differing = [
            f"{key!r} ({first.scheme}: {first.fingerprint.get(key)!r}, "
            f"{other.scheme}: {other.fingerprint.get(key)!r})"
            for key in sorted(set(shared) | set(other.fingerprint))
            if key not in _PER_SCHEME_FIELDS
            and first.fingerprint.get(key) != other.fingerprint.get(key)
        ]
        if _analytic(other.model_cost) != _analytic(first.model_cost):
            differing.append(f"model cost ({first.model_cost} vs {other.model_cost})")
        if abs(other.baseline - first.baseline) > baseline_tolerance:
            differing.append(f"baseline score ({first.baseline!r} vs {other.baseline!r})")
        if differing:
            raise ScoresMismatchError(
                "The dictionaries to combine were made for different models or settings: "
                + "; ".join(differing)
                + ". Build each scheme's dictionary on the same model, evaluator and settings."
            )

    planned = _merge_order([s.planned for s in scores])
    layers: dict[str, LayerScores] = {}
    for name in planned:
        having = [s for s in scores if name in s.layers]
        info = having[0].layers[name].info
        info = dataclasses.replace(info, cost=_scaled(info.cost, having[0], first))
        original = info.cost.latency_ns
        entries = [
            dataclasses.replace(
                e, scheme=s.scheme, cost=_rescaled(e.cost, s.layers[name].info.cost, original)
            )
            for s in having
            for e in s.layers[name].entries
        ]
        entries.sort(key=lambda e: (e.kept_ratio, str(e.scheme)))
        layers[name] = LayerScores(info=info, entries=tuple(entries))
    # A layer is skipped only when no scheme could compress it.
    skipped_names = _merge_order([list(s.skipped) for s in scores])
    skipped = {
        name: "; ".join(f"{s.scheme}: {s.skipped[name]}" for s in scores if name in s.skipped)
        for name in skipped_names
        if name not in layers
    }
    fingerprint: dict[str, Any] = {
        **shared,
        "scheme": MIXED_SCHEME,
        "schemes": names,
        "candidates": {s.scheme: s.fingerprint.get("candidates") for s in scores},
    }
    settings = {
        s.scheme: s.fingerprint["scheme_settings"]
        for s in scores
        if "scheme_settings" in s.fingerprint
    }
    if settings:
        fingerprint["scheme_settings"] = settings
    return EvalScores(
        fingerprint=fingerprint,
        baseline=first.baseline,
        model_cost=first.model_cost,
        planned=tuple(planned),
        layers=layers,
        skipped=skipped,
    )
