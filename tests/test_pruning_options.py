"""NetsPresso's pruning options (policy, layer_norm, group_policy) on residual models with
planted filter norms, so each option's effect on the kept channels is known in advance; and
the global threshold that makes layer_norm matter."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from greedy_compress import build_eval_scores
from greedy_compress.apply import apply_selection
from greedy_compress.errors import (
    InvalidParameterError,
    ScoresMismatchError,
    TargetUnreachableError,
)
from greedy_compress.graph import ORIGINAL_OUTPUTS, build_graph, group_replacements
from greedy_compress.model.cost import count_macs
from greedy_compress.schemes import FilterPruning, filter_pruning_scheme
from greedy_compress.schemes.criteria import ChannelEvidence, get_criterion
from greedy_compress.schemes.criteria.options import (
    GROUP_POLICIES,
    LAYER_NORMS,
    POLICIES,
    normalize,
)
from greedy_compress.selection.recommend import recommend_global_threshold
from tests.pruning_models import FACTORIES, make_inputs, make_model

EXAMPLE = torch.zeros(1, 1, 4, 4)


class Planted(nn.Module):
    """``stem`` and ``branch`` write channels a residual add ties (group A, owned by stem,
    read by branch and mid); ``mid`` writes group B (read by head). 1x1 convs, no bias."""

    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 1, bias=False)
        self.branch = nn.Conv2d(4, 4, 1, groups=groups, bias=False)
        self.mid = nn.Conv2d(4, 4, 1, bias=False)
        self.head = nn.Conv2d(4, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(self.mid(x + self.branch(x)))


def planted(
    stem: list[float],
    *,
    branch: list[float] | None = None,
    mid: list[float] | None = None,
    head: list[float] | None = None,
    groups: int = 1,
) -> Planted:
    """Filter c of stem has norm stem[c]; branch and mid are diagonal (filter c and input
    column c both have norm value[c]); head's input column c has norm head[c]."""
    model = Planted(groups)
    with torch.no_grad():
        for conv in (model.stem, model.branch, model.mid, model.head):
            conv.weight.zero_()
        for c, value in enumerate(stem):
            model.stem.weight[c, 0] = value
        for c, value in enumerate(branch or [1.0] * 4):
            model.branch.weight[c, c % (4 // groups)] = value
        for c, value in enumerate(mid or [1.0] * 4):
            model.mid.weight[c, c] = value
        for c, value in enumerate(head or [1.0] * 4):
            model.head.weight[0, c] = value
    return model.eval()


def kept(scheme: FilterPruning, model: nn.Module, name: str, rank: int) -> list[int]:
    scheme.prepare(model, example_input=EXAMPLE)
    record = scheme.factorize_in(model, name).replay(rank)
    assert record is not None
    return record["kept"]


# --- policy: the layers a residual add ties ---------------------------------------------


def test_backward_takes_the_following_layers_weights_average_the_tied_producers():
    # Group A: stem [4,3,2,1], branch [1,1,1,1] -> average [2.5, 2, 1.5, 1]: keeps 0, 1.
    # Its readers branch [1,1,1,1] and mid [1,2,3,4] -> backward [1, 1.5, 2, 2.5]: keeps 2, 3.
    model = planted([4, 3, 2, 1], mid=[1, 2, 3, 4], head=[4, 3, 2, 1])
    assert kept(FilterPruning(policy="average"), model, "stem", 2) == [0, 1]
    assert kept(FilterPruning(policy="backward"), model, "stem", 2) == [2, 3]
    # Group B: mid's filters [1,2,3,4] vs head's columns [4,3,2,1].
    assert kept(FilterPruning(policy="average"), model, "mid", 2) == [2, 3]
    assert kept(FilterPruning(policy="backward"), model, "mid", 2) == [0, 1]


def test_average_and_sum_rank_one_group_alike_and_unlike_the_joint_norm():
    # Channel 0: stem 4, branch 0; channel 1: 2.5 and 2.5. Averaged (or summed) channel 1
    # wins (2.5 against 2); the L2 norm of both filters side by side prefers channel 0.
    model = planted([4, 2.5, 1, 1], branch=[0, 2.5, 1, 1])
    assert kept(FilterPruning(policy="average"), model, "stem", 1) == [1]
    assert kept(FilterPruning(policy="sum"), model, "stem", 1) == [1]
    joint = get_criterion("l2", "t")(
        ChannelEvidence((model.stem.weight.flatten(1), model.branch.weight.flatten(1)))
    )
    assert int(joint.argmax()) == 0


def test_backward_importance_is_the_norm_of_the_weights_pruning_a_channel_removes():
    # Ground truth by another path: the graph's own pruning of channel c, on every reference
    # family (a flatten into a Linear, depthwise carriers, concatenation, residual adds).
    for key in FACTORIES:
        model = make_model(key)
        example = make_inputs(1)
        graph = build_graph(model, example)
        scheme = FilterPruning(policy="backward")
        scheme.prepare(model, example_input=example)
        for group in scheme.prunable_layers().values():
            if group.parts > 1 or set(group.consumers) & set(group.producers):
                continue
            importance = scheme.channel_importance(model, graph, group)
            for channel in range(2):
                keep = [c for c in range(group.size) if c != channel]
                smaller = group_replacements(model, graph, group, keep)
                removed = [
                    (
                        model.get_submodule(n).weight.double().pow(2).sum()
                        - smaller[n].weight.double().pow(2).sum()
                    ).sqrt()
                    for n in group.consumers
                ]
                expected = torch.stack(removed).mean()
                torch.testing.assert_close(importance[channel], expected, msg=f"{key} {group}")


# --- group_policy: a grouped conv on the residual stream ---------------------------------


def test_count_ranks_each_part_alone_average_drops_the_same_positions_everywhere():
    # Group A is split by branch's 2 conv groups: parts [5, 1] and [2, 3] (branch zero).
    model = planted([5, 1, 2, 3], branch=[0, 0, 0, 0], groups=2)
    assert kept(FilterPruning(group_policy="count"), model, "stem", 2) == [0, 3]
    # Positions: (5 + 2) / 2 and (1 + 3) / 2: position 0 stays in both parts.
    assert kept(FilterPruning(group_policy="average"), model, "stem", 2) == [0, 2]
    assert kept(FilterPruning(group_policy="sum"), model, "stem", 2) == [0, 2]


def test_count_under_one_threshold_removes_the_smallest_count_of_any_part():
    # Parts [5, 1] and [2, 3] (halved by the average with the zero branch): at threshold
    # 0.5 only part 0 has a channel below, so nothing goes; at 1.0 one from each part.
    model = planted([5, 1, 2, 3], branch=[0, 0, 0, 0], mid=[10, 20, 30, 40], groups=2)
    options = {"ratio": 0.25, "example_input": EXAMPLE, "layer_norm": "none"}
    count = _global(model, group_policy="count", **options)
    assert count.details["global_threshold"]["threshold"] == 1.0
    assert count.details["replay"] == {"stem": {"kept": [0, 3]}}
    average = _global(model, group_policy="average", **options)
    assert average.details["global_threshold"]["threshold"] == 1.0  # position (1 + 3) / 4
    assert average.details["replay"] == {"stem": {"kept": [0, 2]}}


def _global(model: nn.Module, *, ratio: float, example_input: torch.Tensor, **options):
    return recommend_global_threshold(
        model, ratio=ratio, scheme=FilterPruning(**options), example_input=example_input
    )


# --- the global threshold: where sum and layer_norm matter -------------------------------


def test_sum_protects_the_tied_channels_under_one_threshold():
    # Group A: stem = branch = [2, 4, 6, 8]: average [2, 4, 6, 8], sum [4, 8, 12, 16];
    # group B: mid [3, 5, 7, 9]. Three of the eight channels go.
    model = planted([2, 4, 6, 8], branch=[2, 4, 6, 8], mid=[3, 5, 7, 9])
    options = {"ratio": 0.375, "example_input": EXAMPLE, "layer_norm": "none"}
    average = _global(model, policy="average", **options)
    assert average.details["replay"] == {"stem": {"kept": [2, 3]}, "mid": {"kept": [1, 2, 3]}}
    total = _global(model, policy="sum", **options)
    assert total.details["replay"] == {"stem": {"kept": [1, 2, 3]}, "mid": {"kept": [2, 3]}}
    # Rescaled per layer, the sum's factor 2 cancels: the same channels as the average.
    scaled = _global(model, policy="sum", **{**options, "layer_norm": "tss_norm"})
    assert (
        scaled.details["replay"]
        == _global(model, policy="average", **{**options, "layer_norm": "tss_norm"}).details[
            "replay"
        ]
    )


def test_layer_norm_changes_which_layers_lose_channels():
    # Group A [10, 20, 30, 40] dwarfs group B [1, 2, 3, 10] unnormalised; as shares of their
    # layer's total (tss_norm) B's smallest, 1/16, sits below A's 1/10.
    model = planted([10, 20, 30, 40], branch=[10, 20, 30, 40], mid=[1, 2, 3, 10])
    options = {"ratio": 0.25, "example_input": EXAMPLE}
    plain = _global(model, layer_norm="none", **options)
    assert {n: c.rank for n, c in plain.choices.items()} == {"mid": 2}
    shares = _global(model, layer_norm="tss_norm", **options)
    assert {n: c.rank for n, c in shares.choices.items()} == {"stem": 3, "mid": 3}
    assert shares.details["global_threshold"]["threshold"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("layer_norm", "expected"),
    [
        ("none", [1.0, 2.0, 3.0, 6.0]),
        ("tss_norm", [1 / 12, 2 / 12, 3 / 12, 6 / 12]),
        ("linear_scaling", [0.0, 0.2, 0.4, 1.0]),
        ("standard_score", [(x - 3) / 3.5**0.5 for x in (1, 2, 3, 6)]),
        (
            "softmax_norm",
            [math.exp(x) / sum(math.exp(y) for y in (1, 2, 3, 6)) for x in (1, 2, 3, 6)],
        ),
    ],
)
def test_each_layer_norm_by_its_formula(layer_norm, expected):
    found = normalize(torch.tensor([1.0, 2.0, 3.0, 6.0]), layer_norm)
    torch.testing.assert_close(found, torch.tensor(expected, dtype=torch.float64))
    assert normalize(torch.full((3,), 2.0), layer_norm).isfinite().all()  # constant scores


def test_layer_norm_never_changes_the_channels_one_layer_keeps():
    model, example = make_model("resnet"), make_inputs(1)
    orders = set()
    for layer_norm in LAYER_NORMS.values:
        scheme = FilterPruning(layer_norm=layer_norm)
        scheme.prepare(model, example_input=example)
        graph = scheme.graph_for(model)
        groups = scheme.prunable_layers()
        orders.add(
            tuple((n, tuple(scheme.rank_channels(model, graph, g, n))) for n, g in groups.items())
        )
    assert len(orders) == 1


def test_the_global_selection_builds_what_it_predicts_on_a_resnet():
    model, example = make_model("resnet"), make_inputs(1)
    selection = recommend_global_threshold(model, ratio=0.4, example_input=example)
    info = selection.details["global_threshold"]
    assert info["pruned_fraction"] >= 0.4 and info["layer_norm"] == "tss_norm"
    small = apply_selection(model, selection, example_input=example)
    measured = count_macs(small, example) / count_macs(model, example)
    assert measured == pytest.approx(selection.predicted_ratio, abs=1e-12)
    for name, choice in selection.choices.items():
        assert small.get_submodule(name).out_channels == choice.rank
        # The pruned module records which of the original's output channels it keeps.
        kept_channels = getattr(small.get_submodule(name), ORIGINAL_OUTPUTS)
        assert kept_channels == selection.details["replay"][name]["kept"]


def test_global_threshold_refuses_bad_input():
    model = planted([1, 2, 3, 4])
    with pytest.raises(TargetUnreachableError, match="out of reach"):
        recommend_global_threshold(model, ratio=0.9, example_input=EXAMPLE)
    for scheme in ("weight_svd", "filter_pruning_index"):
        with pytest.raises(InvalidParameterError, match="'scheme' parameter"):
            recommend_global_threshold(model, ratio=0.5, scheme=scheme, example_input=EXAMPLE)
    with pytest.raises(InvalidParameterError, match=r"'layers'.*'branch'.*tied to stem"):
        recommend_global_threshold(model, ratio=0.2, layers=["branch"], example_input=EXAMPLE)
    with pytest.raises(InvalidParameterError, match="'ratio' parameter"):
        recommend_global_threshold(model, ratio=1.0, example_input=EXAMPLE)


# --- the options as parameters ----------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "constraint"),
    [("policy", POLICIES), ("layer_norm", LAYER_NORMS), ("group_policy", GROUP_POLICIES)],
)
def test_bad_option_values_are_refused_with_the_choices(option, constraint):
    for scheme in (FilterPruning, filter_pruning_scheme("gm")):
        for bad in constraint.invalid():
            with pytest.raises(InvalidParameterError, match=rf"'{option}' parameter.*one of"):
                scheme(**{option: bad})


@pytest.mark.parametrize(
    ("option", "other"),
    [("policy", "backward"), ("layer_norm", "none"), ("group_policy", "average")],
)
def test_dictionaries_built_with_other_options_do_not_match(tmp_path, option, other):
    model, path = planted([4, 3, 2, 1]), tmp_path / "scores.json"
    settings = {"candidates": [0.5], "example_input": EXAMPLE, "progress": False}

    def evaluator(net: nn.Module) -> float:
        with torch.no_grad():
            return float(net(torch.ones(1, 1, 4, 4)).sum())

    evaluator.name = "planted-sum"  # type: ignore[attr-defined]
    scores = build_eval_scores(
        model, evaluator, scheme=FilterPruning(), scores_path=path, **settings
    )
    assert scores.fingerprint["scheme_settings"][option] == FilterPruning().settings()[option]
    with pytest.raises(ScoresMismatchError, match="scheme_settings"):
        build_eval_scores(
            model,
            evaluator,
            scheme=FilterPruning(**{option: other}),
            scores_path=path,
            **settings,
        )
