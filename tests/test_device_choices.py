"""What the ``auto`` speed settings pick: the CPU's long-standing behaviour on the CPU, the fast
kernels on CUDA; and the process-wide TF32 switch shared by concurrent runs."""

from __future__ import annotations

import itertools
import threading

import pytest
import torch

from siren_recon.engine.fitting.device_choices import TF32, adam_options, uses_tf32
from siren_recon.engine.unoriented.clearance import Clearance

from .shapes import small_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_keeps_the_cpu_as_it_was_and_picks_the_fast_kernels_on_cuda():
    config = small_config()
    assert not uses_tf32(config, CPU) and uses_tf32(config, CUDA)
    assert adam_options(config, CPU) == {"foreach": False}
    assert adam_options(config, CUDA) == {"fused": True}
    assert not uses_tf32(small_config(train__matmul_precision="float32"), CUDA)
    assert not uses_tf32(small_config(train__matmul_precision="tf32"), CPU)  # the CPU has no TF32
    assert adam_options(small_config(train__adam="foreach"), CUDA) == {"foreach": True}
    assert adam_options(small_config(train__adam="fused"), CPU) == {"fused": True}


@pytest.mark.parametrize("kernel", ["for-loop", "foreach", "fused"])
def test_every_adam_kernel_trains_to_the_same_parameters_within_rounding(kernel):
    torch.manual_seed(0)
    reference = torch.nn.Linear(8, 4)
    model = torch.nn.Linear(8, 4)
    model.load_state_dict(reference.state_dict())
    x = torch.randn(64, 8)
    for net, options in ((reference, {"foreach": False}), (model, adam_options(small_config(train__adam=kernel), CPU))):
        optimiser = torch.optim.Adam(net.parameters(), lr=1e-2, **options)
        for _ in range(20):
            optimiser.zero_grad()
            net(x).square().mean().backward()
            optimiser.step()
    for a, b in zip(reference.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_tf32_stays_on_while_any_run_holds_it_and_is_restored_after_the_last():
    before = torch.backends.cuda.matmul.allow_tf32
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first() -> None:
        with TF32.held(True):
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with TF32.held(True):
            second_in.set()
            first_out.wait(10)
            seen["after the first let go"] = torch.backends.cuda.matmul.allow_tf32

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert seen == {"after the first let go": True}
    assert torch.backends.cuda.matmul.allow_tf32 == before
    with TF32.held(False):
        assert torch.backends.cuda.matmul.allow_tf32 == before


def test_the_clearance_lookup_is_the_eight_corner_walk_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    resolution = 16
    clearance = Clearance(torch.rand((resolution,) * 3, generator=generator), 0.05, torch.zeros((0, 3)))
    x = torch.rand((5000, 3), generator=generator) * 2.4 - 1.2  # some outside the cube
    step = clearance.cell
    base = ((x.clamp(-1.0, 1.0) + 1.0) / step).floor().long().clamp_(0, resolution - 2)
    lower = torch.full_like(x[:, 0], -float("inf"))
    for corner in itertools.product((0, 1), repeat=3):
        i, j, k = (base[:, axis] + corner[axis] for axis in range(3))
        node = torch.stack([i, j, k], dim=1).to(x.dtype) * step - 1.0
        lower = torch.maximum(lower, clearance.distance[i, j, k] - (x - node).norm(dim=-1))
    assert torch.equal(clearance.needed(x), torch.relu(lower - clearance.margin))
