"""Layer input statistics: moments against brute force, the calibration cache."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from greedy_compress.errors import InvalidParameterError
from greedy_compress.model.statistics import (
    Calibration,
    InputMoment,
    collect_moments,
    model_hash,
    unfold_patches,
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, stride=2)
        self.wide = nn.Conv2d(6, 4, 3, padding="same", padding_mode="reflect")
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.head = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        x = self.depthwise(torch.relu(self.wide(x)))
        return self.head(x.flatten(1))


def _inputs(count: int = 20) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(count, 3, 8, 8)


def test_patch_moments_equal_the_unfolded_inputs_second_moment():
    model, inputs = Net().eval(), _inputs()
    moments = collect_moments(model, ["conv", "wide", "head"], inputs, batch_size=7)
    seen = {}
    hooks = [
        getattr(model, n).register_forward_pre_hook(lambda m, a, n=n: seen.setdefault(n, a[0]))
        for n in ("conv", "wide", "head")
    ]
    with torch.no_grad():
        model(inputs)
    for hook in hooks:
        hook.remove()
    for name in ("conv", "wide", "head"):
        rows = unfold_patches(getattr(model, name), seen[name]).double()
        assert moments[name].rows == rows.shape[0]
        torch.testing.assert_close(moments[name].matrix, rows.T @ rows / rows.shape[0])
    # the unfolded patches reproduce the layer (reflect padding, "same" included)
    wide = model.wide
    rows = unfold_patches(wide, seen["wide"])
    expected = wide(seen["wide"]).permute(0, 2, 3, 1).reshape(-1, 4)
    torch.testing.assert_close(rows @ wide.weight.reshape(4, -1).T + wide.bias, expected)


def test_wide_convs_get_the_channel_moment_and_errors_use_it_per_tap():
    model, inputs = Net().eval(), _inputs()
    moment = collect_moments(model, ["wide"], inputs, max_features=20)["wide"]
    assert moment.channel_wise and moment.matrix.shape == (6, 6)
    seen = []
    hook = model.wide.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        model(inputs)
    hook.remove()
    pixels = seen[0].movedim(1, -1).reshape(-1, 6).double()
    torch.testing.assert_close(moment.matrix, pixels.T @ pixels / pixels.shape[0])
    delta = torch.randn(4, 6 * 9, dtype=torch.float64)
    dense = delta @ moment.patch_matrix() @ delta.T
    assert moment.error(delta) == pytest.approx(float(dense.trace()))


def test_error_is_the_mean_squared_output_change():
    torch.manual_seed(0)
    rows = torch.randn(300, 5, dtype=torch.float64) @ torch.randn(5, 5, dtype=torch.float64)
    moment = InputMoment(rows.T @ rows / 300, rows=300, channels=5, taps=1)
    delta = torch.randn(3, 5, dtype=torch.float64)
    assert moment.error(delta) == pytest.approx(float((rows @ delta.T).pow(2).sum(1).mean()))


def test_cholesky_damps_a_singular_moment_until_it_factors():
    singular = torch.zeros(3, 3, dtype=torch.float64)
    singular[0, 0] = 2.0
    factor = InputMoment(singular, rows=1, channels=3, taps=1).cholesky(0.01)
    torch.testing.assert_close(
        factor @ factor.T, singular + 0.01 * 2.0 / 3 * torch.eye(3, dtype=torch.float64)
    )


def test_calibration_caches_per_model_and_in_a_file_keyed_by_model_and_data(tmp_path):
    model, path = Net().eval(), tmp_path / "stats.pt"
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    first = Calibration([(_inputs(), None)], num_samples=12, path=path)
    moments = first.moments(model)
    assert set(moments) == {"conv", "wide", "head"}  # the grouped conv has none
    assert first.moments(model) is moments and len(calls) == 1  # memory cache
    again = Calibration([(_inputs(), None)], num_samples=12, path=path).moments(model)
    assert len(calls) == 1  # read from the file, no model run
    torch.testing.assert_close(again["wide"].matrix, moments["wide"].matrix)
    other = Calibration([(_inputs(), None)], num_samples=10, path=path)
    other.moments(model)  # other samples: collected again, and the file rewritten
    assert len(calls) == 2
    with torch.no_grad():
        model.head.bias.add_(1.0)  # other weights: another fingerprint
    assert model_hash(model) != first.fingerprint(Net())["model"]
    Calibration([(_inputs(), None)], num_samples=10, path=path).moments(model)
    assert len(calls) == 3


def test_calibration_refuses_bad_settings_by_name():
    with pytest.raises(InvalidParameterError, match="'num_samples' parameter of Calibration"):
        Calibration([], num_samples=0)
    with pytest.raises(InvalidParameterError, match="'data' parameter of Calibration"):
        Calibration([], num_samples=4).samples  # noqa: B018
