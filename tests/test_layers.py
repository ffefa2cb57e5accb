from __future__ import annotations

import pytest
import torch
from torch import nn

from greedy_compress.errors import InvalidParameterError
from greedy_compress.model.profile import LayerInfo, make_example_input, profile_model


def test_layers_are_listed_by_name_in_call_order_with_measured_costs(tiny_net):
    profile = profile_model(tiny_net, torch.zeros(1, 1, 8, 8))
    assert list(profile.layers) == ["conv1", "conv2", "depthwise", "pointwise", "head"]
    conv2 = profile.layers["conv2"]
    assert conv2.kind == "conv2d" and not conv2.bias
    assert conv2.cost.macs == 64 * 16 * 8 * 9 and conv2.cost.params == 16 * 8 * 9
    assert profile.layers["depthwise"].groups == 16
    assert profile.model_cost.macs == sum(layer.cost.macs for layer in profile.layers.values())


def test_call_order_not_definition_order():
    class Reversed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.last = nn.Linear(4, 2)
            self.first = nn.Linear(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.last(self.first(x))

    assert list(profile_model(Reversed(), torch.zeros(1, 3)).layers) == ["first", "last"]


def test_shared_and_unused_modules_are_unusable_with_a_reason():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Linear(4, 4)
            self.unused = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.shared(self.shared(x))

    profile = profile_model(Odd(), torch.zeros(1, 4))
    assert profile.layers == {}
    assert "called 2 times" in profile.unusable["shared"]
    assert "not called" in profile.unusable["unused"]


def test_ignore_by_name_and_by_parent(tiny_net):
    nested = nn.Sequential(tiny_net)
    profile = profile_model(nested, torch.zeros(1, 1, 8, 8), ignore=["0.conv1", "0.head"])
    assert "0.conv1" not in profile.layers and profile.unusable["0.conv1"] == "ignored by the user"
    assert set(profile_model(nested, torch.zeros(1, 1, 8, 8), ignore=["0"]).layers) == set()


def test_ignoring_a_missing_name_is_an_error(tiny_net):
    with pytest.raises(InvalidParameterError, match=r"'ignore'.*Got 'conv9'"):
        profile_model(tiny_net, torch.zeros(1, 1, 8, 8), ignore=["conv9"])


def test_layer_info_round_trips_through_plain_data(tiny_net):
    profile = profile_model(tiny_net, torch.zeros(2, 1, 8, 8))
    for layer in profile.layers.values():
        assert LayerInfo.from_dict(layer.to_dict()) == layer


@pytest.mark.parametrize(
    ("example", "shape"),
    [(None, None), (torch.zeros(1), (1,)), (None, (1, 0, 3)), (None, "1,3"), ([1.0], None)],
)
def test_example_input_needs_exactly_one_valid_form(example, shape):
    with pytest.raises(InvalidParameterError, match="must be"):
        make_example_input(example, shape, "compress")


def test_input_shape_makes_a_zero_tensor():
    assert make_example_input(None, (2, 3), "compress").shape == (2, 3)


def test_input_shape_follows_the_model_dtype():
    model = nn.Linear(3, 2).to(torch.float64)
    assert make_example_input(None, (1, 3), "compress", like=model).dtype == torch.float64
