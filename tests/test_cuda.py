"""The CUDA paths, on a GPU (skipped without one): the fused pass against autograd, the first
layer exact under TF32, the compiled pass, the sampler on the device, a short reconstruction
with previews on their thread, and two jobs on two GPUs where there are two."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siren_recon.engine.config.reconstruction import ModelConfig, SamplingConfig
from siren_recon.engine.field import fused_gradient
from siren_recon.engine.field.derivatives import sdf_and_gradient
from siren_recon.engine.field.fused_gradient import value_and_gradient_fused
from siren_recon.engine.field.model import FoldedSiren, Siren, first_layer
from siren_recon.engine.fitting.device_choices import TF32
from siren_recon.engine.fitting.sampling import PointSampler
from siren_recon.engine.pipeline import reconstruct_points

from .shapes import SMALL, small_config, sphere_cloud

pytestmark = [pytest.mark.cuda, pytest.mark.slow]
CUDA = torch.device("cuda")


def _model(width: int = 64) -> Siren:
    torch.manual_seed(0)
    return Siren(ModelConfig(hidden_features=width, hidden_layers=2)).to(CUDA)


def _points(count: int) -> torch.Tensor:
    return torch.rand((count, 3), generator=torch.Generator().manual_seed(1)).mul(2).sub(1).to(CUDA)


def _parameter_gradient(model: Siren, f: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    (f.abs().mean() + (grad.norm(dim=1) - 1).abs().mean()).backward()
    return [p.grad.clone() for p in model.parameters()]


def test_the_fused_pass_is_autograd_on_cuda():
    model, x = _model(), _points(4000)
    with TF32.held(False):
        f, grad = value_and_gradient_fused(model, x)
        fused = _parameter_gradient(model, f, grad)
        f_ref, grad_ref = sdf_and_gradient(model, x.clone().requires_grad_(True))
        reference = _parameter_gradient(model, f_ref, grad_ref)
    torch.testing.assert_close(f, f_ref.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad, grad_ref.detach(), rtol=1e-4, atol=1e-4)
    for a, b in zip(fused, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()) + 1e-7)


def test_the_first_layer_is_exact_under_tf32():
    model, x = _model(256), _points(20_000)
    first = model.sine_layers[0]
    exact = (x.double() @ (first.linear.weight.double() * first.omega_0).T + first.linear.bias.double() * first.omega_0)
    with TF32.held(True):
        assert torch.backends.cuda.matmul.allow_tf32
        layer = first(x).double()
        weight, bias = FoldedSiren(model).layers[0]
        folded = first_layer(x, weight.T, bias).double()
    # float32 rounding of the phase is ~1e-5 rad; TF32's rounding of the inputs would be ~1e-2
    assert float((torch.sin(exact) - layer).abs().max()) < 1e-4
    assert float((folded - exact).abs().max()) < 1e-4


def test_tf32_training_steps_match_float32_closely():
    model, x = _model(256), _points(8000)
    with TF32.held(False):
        f32, g32 = value_and_gradient_fused(model, x)
    with TF32.held(True):
        ftf, gtf = value_and_gradient_fused(model, x)
    assert float((ftf - f32).abs().max()) < 2e-2 * float(f32.abs().max()) + 1e-3
    assert float((gtf - g32).norm(dim=1).median()) < 2e-2 * float(g32.norm(dim=1).median())


def test_the_compiled_pass_runs_on_cuda_and_agrees_with_eager():
    model, x = _model(), _points(3000)
    eager_f, eager_grad = value_and_gradient_fused(model, x, compile=False)
    f, grad = value_and_gradient_fused(model, x, compile=True)
    _parameter_gradient(model, f, grad)
    assert not fused_gradient._PASSES.failed
    torch.testing.assert_close(f, eager_f, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-4, atol=1e-4)


def test_the_sampler_draws_on_the_device_with_its_own_generator():
    cloud = _points(500)
    first = PointSampler(cloud, None, SamplingConfig(), torch.Generator(device=CUDA).manual_seed(3)).sample()
    again = PointSampler(cloud, None, SamplingConfig(), torch.Generator(device=CUDA).manual_seed(3)).sample()
    assert first.surface.device.type == first.box.device.type == first.near.device.type == "cuda"
    assert torch.equal(first.box, again.box) and torch.equal(first.near, again.near)


def test_a_50_step_reconstruction_on_cuda_streams_previews_then_the_sphere():
    points, _ = sphere_cloud(3000, radius=1.0)
    config = small_config(train__iterations=50, train__device="cuda", train__compile="auto", mode="unoriented",
                          preview__enabled=True, preview__first_iteration=10, refinement__share=0.4)
    events = []
    result = reconstruct_points(points, None, config, on_mesh=events.append)
    assert len(events) >= 3 and events[-1].final and not any(e.final for e in events[:-1])
    assert [e.iteration for e in events] == sorted(e.iteration for e in events)
    assert abs(float(np.median(np.linalg.norm(result.vertices, axis=1))) - 1.0) < 0.1


@pytest.mark.live
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_jobs_train_on_two_gpus_at_once(tmp_path):
    from .live_backend import run_two_jobs, started_before_first_done

    points, normals = sphere_cloud(2000)
    job = {**SMALL, "train.iterations": 400, "train.progress_every": 10}
    events = run_two_jobs(tmp_path, "cuda:0,cuda:1", points, normals, job)
    assert len(started_before_first_done(events)) == 2
