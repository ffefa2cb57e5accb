"""Hand-made eval-score dictionaries with known answers, for solver tests."""

from __future__ import annotations

from greedy_compress.dictionary.scores import EvalScores, LayerScores, ScoreEntry
from greedy_compress.model.cost import Cost
from greedy_compress.model.profile import LayerInfo


def make_scores(
    layers: dict[str, tuple[int, list[tuple[int, float | None]]]],
    *,
    baseline: float = 1.0,
    fixed_macs: int = 0,
) -> EvalScores:
    """Build a dictionary from ``{name: (macs, [(candidate macs, score), ...])}``.

    Costs are used as both MACs and params; the rank of a candidate is its index + 1.
    """
    scored = {}
    for name, (macs, entries) in layers.items():
        info = LayerInfo(
            name=name,
            kind="linear",
            in_channels=macs,
            out_channels=1,
            kernel_size=(),
            stride=(),
            padding=(),
            dilation=(),
            groups=1,
            bias=False,
            input_shape=(1, macs),
            output_shape=(1, 1),
            cost=Cost(macs, macs),
        )
        scored[name] = LayerScores(
            info=info,
            entries=tuple(
                ScoreEntry(
                    asked_ratio=c / macs, rank=i + 1, kept_ratio=c / macs, cost=Cost(c, c), score=s
                )
                for i, (c, s) in enumerate(entries)
            ),
        )
    total = fixed_macs + sum(macs for macs, _ in layers.values())
    return EvalScores(
        fingerprint={"scheme": "weight_svd", "cost": "mac"},
        baseline=baseline,
        model_cost=Cost(total, total),
        planned=tuple(layers),
        layers=scored,
    )


TWO_LAYERS = make_scores(
    {
        "a": (100, [(20, 0.5), (50, 0.9), (80, 0.98)]),
        "b": (100, [(20, 0.95), (50, 0.97), (80, 0.99)]),
    }
)
