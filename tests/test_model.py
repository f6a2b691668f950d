"""The SIREN network: the paper's initialisation and its derivatives."""

from __future__ import annotations

import math

import pytest
import torch

from siren_recon.engine.config.reconstruction import ModelConfig
from siren_recon.engine.field.derivatives import sdf_and_gradient
from siren_recon.engine.field.model import Siren, exact_product, first_layer


def test_initialisation_bounds_follow_the_paper():
    torch.manual_seed(0)
    model = Siren(ModelConfig(hidden_features=256, hidden_layers=3, init="siren"))
    first = model.layers[0].linear.weight
    assert first.abs().max() <= 1.0 / 3.0
    assert first.abs().max() > 0.9 / 3.0  # uniform, so the bound is nearly reached
    for layer in list(model.layers[1:]) + [model.output]:
        bound = math.sqrt(6.0 / 256) / 30.0
        weight = layer.linear.weight if hasattr(layer, "linear") else layer.weight
        assert weight.abs().max() <= bound
        # U(-b, b) has standard deviation b / sqrt(3)
        assert abs(float(weight.detach().std()) - bound / math.sqrt(3.0)) < 0.05 * bound


def test_activation_statistics_are_depth_independent():
    """Sec. 3.2 of the paper: with this init, omega_0 * W x has unit standard deviation in every
    hidden layer and the sine outputs follow the arcsine law (variance 1/2), whatever the depth."""
    torch.manual_seed(1)
    model = Siren(ModelConfig(hidden_features=512, hidden_layers=5, init="siren"))
    x = torch.rand(4096, 3) * 2 - 1
    h = model.layers[0](x)
    with torch.no_grad():
        for layer in model.layers[1:]:
            pre = layer.omega_0 * (h @ layer.linear.weight.T)
            assert 0.85 < float(pre.std()) < 1.15
            h = layer(h)
            assert abs(float(h.var()) - 0.5) < 0.06
            assert abs(float(h.mean())) < 0.1


def test_autograd_gradient_matches_finite_differences():
    torch.manual_seed(2)
    model = Siren(ModelConfig(hidden_features=64, hidden_layers=2, init="siren")).double()
    x = (torch.rand(64, 3, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    _, grad = sdf_and_gradient(model, x, create_graph=False)
    eps = 1e-6
    numeric = torch.zeros_like(grad)
    with torch.no_grad():
        for axis in range(3):
            step = torch.zeros(3, dtype=torch.float64)
            step[axis] = eps
            numeric[:, axis] = (model(x + step) - model(x - step)) / (2 * eps)
    assert torch.allclose(grad, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hidden_layers", [0, 2])
def test_folded_evaluation_equals_the_network(hidden_layers):
    from siren_recon.engine.field.model import FoldedSiren

    model = Siren(ModelConfig(hidden_features=48, hidden_layers=hidden_layers))
    x = torch.rand(5000, 3) * 2 - 1
    with torch.no_grad():
        expected = model(x)
    got = FoldedSiren(model)(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_the_first_layers_exact_product_is_the_matrix_product_to_float32_rounding():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((5000, 3), generator=generator) * 2 - 1
    weight = (torch.rand((256, 3), generator=generator) * 2 - 1) * 30.0 / 3
    bias = torch.rand(256, generator=generator) * 30.0
    exact = x.double() @ weight.double().T + bias.double()
    # the CUDA path's sum of broadcast products, run here on the CPU, and the CPU's addmm
    for z in (exact_product(x, weight, bias), first_layer(x, weight, bias)):
        assert z.dtype == torch.float32 and z.shape == (5000, 256)
        assert float((z.double() - exact).abs().max()) < 1e-5 * float(exact.abs().max())
