"""Every registered solver, on the same random dictionaries: within budget, well formed."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from dictionaries import make_scores

from greedy_compress.dictionary.mixed import combine_scores
from greedy_compress.dictionary.scores import LayerScores
from greedy_compress.errors import TargetUnreachableError
from greedy_compress.selection import Selection, available_solvers, get_solver, layer_options


def _random_scores(seed: int, scheme: str = "weight_svd"):
    rng = random.Random(seed)
    layers = {}
    for i in range(rng.randint(1, 5)):
        macs = rng.randint(50, 400)
        costs = sorted(rng.sample(range(1, macs), k=min(4, macs - 1)))
        layers[f"l{i}"] = (macs, [(c, round(rng.uniform(0.3, 1.0), 3)) for c in costs])
    scores = make_scores(layers, fixed_macs=rng.randint(0, 50))
    fingerprint = {**scores.fingerprint, "scheme": scheme}
    return type(scores)(
        fingerprint, scores.baseline, scores.model_cost, scores.planned, scores.layers
    )


@pytest.mark.parametrize("name", available_solvers())
@pytest.mark.parametrize("mixed", [False, True])
def test_every_solver_stays_within_budget_and_names_itself(name, mixed):
    solver = get_solver(name)
    for seed in range(12):
        scores = _random_scores(seed)
        if mixed:
            # same layers and costs, another scheme's scores: a per-layer scheme choice
            rng = random.Random(seed + 1000)
            other = type(scores)(
                {**scores.fingerprint, "scheme": "spatial_svd"},
                scores.baseline,
                scores.model_cost,
                scores.planned,
                {
                    n: LayerScores(
                        layer.info,
                        tuple(
                            replace(e, score=round(rng.uniform(0.3, 1.0), 3)) for e in layer.entries
                        ),
                    )
                    for n, layer in scores.layers.items()
                },
            )
            scores = combine_scores([scores, other])
        options = layer_options(scores, "mac")
        total = scores.model_cost.macs
        for target in (0.4, 0.6, 0.8):
            try:
                selection = solver.solve(scores, target=target)
            except TargetUnreachableError:
                cheapest = (
                    total
                    - sum(x.info.cost.macs for x in scores.layers.values())
                    + sum(o[0].cost for o in options.values())
                )
                assert cheapest > target * total
                continue
            assert isinstance(selection, Selection) and selection.solver == name
            assert selection.predicted_ratio <= target + 1e-12
            for layer, choice in selection.choices.items():
                option = next(
                    o for o in options[layer] if o.rank == choice.rank and o.scheme == choice.scheme
                )
                assert choice.kept_ratio == option.kept_ratio
                assert (choice.scheme is not None) == mixed
            assert Selection.from_dict(selection.to_dict()) == selection
