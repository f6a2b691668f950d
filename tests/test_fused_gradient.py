"""The fused value-and-gradient path: exact against autograd, its bfloat16 backward, its compile."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from siren_recon.engine.config.reconstruction import ModelConfig
from siren_recon.engine.errors import ConfigError
from siren_recon.engine.field import fused_gradient
from siren_recon.engine.field.derivatives import sdf_and_gradient
from siren_recon.engine.field.fused_gradient import fused_settings, value_and_gradient_fused
from siren_recon.engine.field.geometric_init import sphere_init
from siren_recon.engine.field.model import Siren
from siren_recon.engine.pipeline import reconstruct_points

from .shapes import small_config, sphere_cloud


def _model(hidden_layers: int, width: int, init: str = "siren") -> Siren:
    torch.manual_seed(hidden_layers * 100 + width)
    model = Siren(ModelConfig(hidden_features=width, hidden_layers=hidden_layers, init=init))
    if init != "siren":
        sphere_init(model, 0.5, True, torch.Generator().manual_seed(1))
    return model


def _loss(f: torch.Tensor, grad: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Uses f and every component of grad f, as the SIREN loss does."""
    return (
        f.abs().mean()
        + (grad.norm(dim=1) - 1).abs().mean()
        + (1 - torch.nn.functional.cosine_similarity(grad, normals)).mean()
    )


def _parameter_gradients(
    model: Siren, f: torch.Tensor, grad: torch.Tensor, normals: torch.Tensor
) -> list[torch.Tensor]:
    grads = torch.autograd.grad(_loss(f, grad, normals), list(model.parameters()), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(model.parameters(), grads)]


def _points(count: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return torch.rand(count, 3, generator=gen) * 2 - 1, torch.nn.functional.normalize(
        torch.randn(count, 3, generator=gen), dim=1
    )


@pytest.mark.parametrize("hidden_layers", [0, 1, 3])
@pytest.mark.parametrize("width", [16, 64])
@pytest.mark.parametrize("init", ["siren", "mfgi"])
def test_fused_path_matches_autograd_in_float32(hidden_layers, width, init):
    """Values, gradients and the parameter gradient of a loss on both equal autograd's to 1e-4
    relative, for every network shape the engine builds."""
    model = _model(hidden_layers, width, init)
    x, normals = _points()
    f, grad = sdf_and_gradient(model, x.clone())
    f2, grad2 = value_and_gradient_fused(model, x, torch.float32, compile=False)
    torch.testing.assert_close(f2, f, rtol=1e-4, atol=1e-4 * float(f.detach().abs().max()))
    torch.testing.assert_close(grad2, grad, rtol=1e-4, atol=1e-4 * float(grad.detach().abs().max()))
    for a, b in zip(_parameter_gradients(model, f, grad, normals), _parameter_gradients(model, f2, grad2, normals)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()) + 1e-8)


def test_a_bfloat16_backward_keeps_the_loss_exact_and_the_step_direction():
    """Only the parameter gradient is rounded: f and grad f are the float32 path's bit for bit,
    and each parameter's gradient points the same way (cosine > 0.9999, 1% norm error)."""
    model = _model(3, 64)
    x, normals = _points(2000)
    f32, grad32 = value_and_gradient_fused(model, x, torch.float32, compile=False)
    f16, grad16 = value_and_gradient_fused(model, x, torch.bfloat16, compile=False)
    assert torch.equal(f16, f32) and torch.equal(grad16, grad32)
    exact = _parameter_gradients(model, f32, grad32, normals)
    rounded = _parameter_gradients(model, f16, grad16, normals)
    assert not all(torch.equal(a, b) for a, b in zip(exact, rounded))  # bfloat16 did run
    for a, b in zip(exact, rounded):
        if a.abs().max() > 0:
            assert float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)) > 0.9999
            assert float((a - b).norm() / a.norm()) < 1e-2


@pytest.mark.slow
@pytest.mark.skipif(not fused_gradient.cpp_compiler_found(), reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_passes_match_the_eager_ones_and_train():
    """Under ``torch.compile`` the passes give the eager values and gradients, and a short
    reconstruction through them (bfloat16 backward) finds the sphere."""
    model = _model(2, 64)
    x, normals = _points()
    f, grad = value_and_gradient_fused(model, x, torch.float32, compile=False)
    f2, grad2 = value_and_gradient_fused(model, x, torch.float32, compile=True)
    assert not fused_gradient._PASSES.failed
    torch.testing.assert_close(f2, f, rtol=1e-5, atol=1e-5 * float(f.detach().abs().max()))
    torch.testing.assert_close(grad2, grad, rtol=1e-5, atol=1e-5 * float(grad.detach().abs().max()))
    for a, b in zip(_parameter_gradients(model, f, grad, normals), _parameter_gradients(model, f2, grad2, normals)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()) + 1e-8)

    points, point_normals = sphere_cloud(2000, radius=1.0)
    # 400 steps: at 200 this small network's sphere is on the edge of converging, and whether a
    # stray inner sheet is left then depends on the CPU's rounding (AVX2 vs AVX-512), in any precision
    config = small_config(train__compile="on", train__backward_precision="bfloat16", train__iterations=400)
    result = reconstruct_points(points, point_normals, config)
    radii = np.linalg.norm(result.vertices, axis=1)
    assert abs(float(np.median(radii)) - 1.0) < 0.02 and float(np.percentile(np.abs(radii - 1), 95)) < 0.05


def test_a_failed_compile_falls_back_to_eager_with_a_warning(monkeypatch, caplog):
    def broken_compile(fn, **_kwargs):
        def run(*_args, **_kw):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(fused_gradient, "_PASSES", fused_gradient._Passes())
    monkeypatch.setattr(torch, "compile", broken_compile)
    model = _model(1, 16)
    x, normals = _points(100)
    with caplog.at_level(logging.WARNING, logger="siren_recon.engine.field.fused_gradient"):
        f, grad = value_and_gradient_fused(model, x, torch.float32, compile=True)
        _parameter_gradients(model, f, grad, normals)
    assert fused_gradient._PASSES.failed
    assert "no C++ compiler" in caplog.text
    f_eager, _ = value_and_gradient_fused(model, x, torch.float32, compile=False)
    assert torch.equal(f, f_eager)


def test_auto_settings_follow_the_device_and_the_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    has_bf16 = fused_gradient.cpu_has_native_bfloat16()
    assert fused_settings("auto", "off", cpu) == (torch.bfloat16 if has_bf16 else torch.float32, False)
    # eager on CUDA: there the step is bound by kernel launches, which compiling did not cut
    assert fused_settings("auto", "auto", cuda) == (torch.float32, False)
    assert fused_settings("bfloat16", "on", cuda) == (torch.bfloat16, True)
    assert fused_settings("float32", "off", cpu) == (torch.float32, False)


@pytest.mark.parametrize(("key", "value"), [("train.backward_precision", "float16"), ("train.compile", "yes")])
def test_unknown_fused_settings_are_refused(key, value):
    with pytest.raises(ConfigError, match=f"{key} must be one of"):
        small_config(**{key.replace(".", "__"): value})


@pytest.mark.slow
def test_the_last_iterations_run_the_backward_in_float32():
    """``train.reduced_precision_until`` 0 trains exactly as a float32 backward; 1 and 0.5 do not,
    and 0.5 differs from 1 (its second half took float32 steps)."""
    from siren_recon.engine.fitting.sampling import PointSampler
    from siren_recon.engine.fitting.trainer import train

    points, normals = sphere_cloud(600)
    finals = {}
    for name, overrides in {
        "float32": {"train__backward_precision": "float32"},
        "until 0": {"train__backward_precision": "bfloat16", "train__reduced_precision_until": 0.0},
        "until 0.5": {"train__backward_precision": "bfloat16", "train__reduced_precision_until": 0.5},
        "until 1": {"train__backward_precision": "bfloat16", "train__reduced_precision_until": 1.0},
    }.items():
        config = small_config(train__iterations=20, **overrides)
        torch.manual_seed(0)
        model = Siren(config.model)
        sampler = PointSampler(
            torch.as_tensor(points, dtype=torch.float32),
            torch.as_tensor(normals, dtype=torch.float32),
            config.sampling,
            torch.Generator().manual_seed(0),
        )
        train(model, sampler, config, "oriented")
        finals[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.equal(finals["until 0"], finals["float32"])
    assert not torch.equal(finals["until 1"], finals["float32"])
    assert not torch.equal(finals["until 0.5"], finals["until 1"])
    assert not torch.equal(finals["until 0.5"], finals["float32"])
