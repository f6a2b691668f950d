"""The SIREN's value and spatial gradient with a hand-written backward pass.

The SIREN loss needs ``f`` and ``grad f`` at each point and then the parameter gradient of a
loss on both: autograd builds that as a double backward. Here one function computes ``f`` and
``grad f`` (float32) and keeps what its backward needs; the backward then takes the parameter
gradient by hand, with the same six matrix products per layer as autograd. What it saves:

* ``sin`` and ``cos`` of each layer are computed once and reused (autograd's double backward
  recomputes them in ``SinBackward`` and ``CosBackward``), and no autograd graph is built;
* under ``torch.compile`` the elementwise work around the matrix products fuses into single
  loops: on a 2-core CPU a (10k, 256) elementwise pass is bound by memory traffic, and the
  forward pass's elementwise part measured 4x faster fused;
* optionally (``backward_dtype``), the backward's matrix products run in bfloat16. They only
  form the parameter gradient: the loss, and so the function fitted, stays float32, and the
  step direction carries a rounding of about 0.3% (cosine to float32 above 0.9999).

The input points get no gradient: they are data.
"""

from __future__ import annotations

import functools
import logging
import shutil
import threading
from pathlib import Path

import torch

from .model import Siren, first_layer


def _forward_pass(
    x: torch.Tensor, params: list[torch.Tensor], omegas: tuple[float, ...], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """``f``, ``grad f`` and what :func:`_backward_pass` reads.

    Notation: ``z_l = W_l h_l + b_l``, ``h_{l+1} = sin z_l``; the reverse pass for ``grad f`` runs
    ``u_l = df/dh_{l+1}``, ``v_l = cos(z_l) u_l``, ``u_{l-1} = v_l W_l``. Everything the backward
    reads is kept in ``dtype``, cast once here.
    """
    out_weight, out_bias = params[-2:]
    weights = [w * omega for w, omega in zip(params[0:-2:2], omegas)]
    biases = [b * omega for b, omega in zip(params[1:-2:2], omegas)]
    inputs, sines, cosines = [], [], []
    h = x
    for layer, (weight, bias) in enumerate(zip(weights, biases)):
        inputs.append(h.to(dtype))
        z = torch.addmm(bias, h, weight.T) if layer else first_layer(h, weight, bias)
        h = torch.sin(z)
        sines.append(h)
        cosines.append(z.cos_())
    f = torch.addmv(out_bias, h, out_weight[0])
    u = out_weight.expand(len(x), -1)
    sin_us, vs, low_cosines = [], [], []
    for layer in reversed(range(len(weights))):
        sin_us.append((sines[layer] * u).to(dtype))
        v = cosines[layer] * u
        # the first layer's v meets only the (B, 3) adjoint of grad f: float32 costs nothing there
        vs.append(v.to(dtype) if layer else v)
        low_cosines.append(cosines[layer].to(dtype))
        u = v @ weights[layer]
    saved = [out_weight, h, *weights, *inputs, *reversed(low_cosines), *reversed(sin_us), *reversed(vs)]
    return f, u, saved


def _backward_pass(
    f_bar: torch.Tensor,
    grad_bar: torch.Tensor,
    saved: list[torch.Tensor],
    omegas: tuple[float, ...],
    dtype: torch.dtype,
) -> list[torch.Tensor]:
    """The parameter gradient (each sine layer's weight and bias, then the output layer's)."""
    n = len(omegas)
    out_weight, last = saved[0], saved[1]
    weights, inputs, cosines, sin_us, vs = (saved[2 + i * n : 2 + (i + 1) * n] for i in range(5))
    low_weights = [w.to(dtype) for w in weights]
    weight_bars: list[torch.Tensor] = []
    z_parts: list[torch.Tensor] = []
    # back through the gradient pass, first layer to last, carrying -u_bar so that
    # -sin(z) u v_bar takes one pass
    neg_u_bar = -grad_bar
    for layer in range(n):
        neg_v_bar = neg_u_bar.to(dtype) @ low_weights[layer].T
        # (a.T @ b).T rather than b.T @ a: the skinny first-layer product measured 3x faster
        weight_bars.append(-(neg_u_bar.T.to(vs[layer].dtype) @ vs[layer]).float().T)
        z_parts.append(sin_us[layer] * neg_v_bar)
        neg_u_bar = cosines[layer] * neg_v_bar
    out_weight_bar = (f_bar @ last - neg_u_bar.sum(0, dtype=f_bar.dtype)).unsqueeze(0)
    out_bias_bar = f_bar.sum().reshape(1)
    # back through the value pass, last layer to first
    h_bar = torch.outer(f_bar, out_weight[0]).to(dtype)
    param_bars: list[torch.Tensor] = []
    for layer in reversed(range(n)):
        z_bar = torch.addcmul(z_parts[layer], cosines[layer], h_bar)
        bias_bar = z_bar.sum(0, dtype=f_bar.dtype)
        if layer:
            h_bar = z_bar @ low_weights[layer]
        weight_bar = weight_bars[layer] + (inputs[layer].T @ z_bar).float().T
        param_bars[:0] = [weight_bar * omegas[layer], bias_bar * omegas[layer]]
    return [*param_bars, out_weight_bar, out_bias_bar]


class _Passes(threading.local):
    """The two passes, eager or under ``torch.compile`` (which fuses the elementwise work
    around the matrix products into single loops: on the CPU these passes are bound by memory
    traffic). A compile that fails falls back to eager, once, with a logged warning. Each
    thread (each of a server's workers) keeps its own compiled passes and its own fallback."""

    def __init__(self) -> None:
        self.compiled: tuple | None = None
        self.failed = False

    def get(self, compile: bool) -> tuple:
        if not compile or self.failed:
            return _forward_pass, _backward_pass
        if self.compiled is None:
            self.compiled = (torch.compile(_forward_pass, dynamic=True), torch.compile(_backward_pass, dynamic=True))
        return self.compiled

    def fail(self, error: Exception) -> None:
        self.failed = True
        _log.warning("torch.compile of the fused SIREN passes failed; running them eagerly: %s", error)


_log = logging.getLogger(__name__)
_PASSES = _Passes()


class _ValueAndGradient(torch.autograd.Function):
    """``(x, params...) -> (f, grad f)``; see the module docstring."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, omegas: tuple[float, ...], dtype: torch.dtype, compile: bool, *params: torch.Tensor
    ):
        forward_pass, _ = _PASSES.get(compile)
        try:
            f, grad, saved = forward_pass(x, list(params), omegas, dtype)
        except Exception as error:  # noqa: BLE001 - any compiler failure: the eager pass still works
            if forward_pass is _forward_pass:
                raise
            _PASSES.fail(error)
            f, grad, saved = _forward_pass(x, list(params), omegas, dtype)
        ctx.omegas, ctx.dtype, ctx.compile = omegas, dtype, compile
        ctx.save_for_backward(*saved)
        return f, grad

    @staticmethod
    def backward(ctx, f_bar: torch.Tensor | None, grad_bar: torch.Tensor | None):
        saved = list(ctx.saved_tensors)
        last = saved[1]
        f_bar = last.new_zeros(len(last)) if f_bar is None else f_bar
        grad_bar = last.new_zeros(len(last), saved[2].shape[1]) if grad_bar is None else grad_bar
        _, backward_pass = _PASSES.get(ctx.compile)
        try:
            bars = backward_pass(f_bar, grad_bar, saved, ctx.omegas, ctx.dtype)
        except Exception as error:  # noqa: BLE001 - as in forward
            if backward_pass is _backward_pass:
                raise
            _PASSES.fail(error)
            bars = _backward_pass(f_bar, grad_bar, saved, ctx.omegas, ctx.dtype)
        return None, None, None, None, *bars


def value_and_gradient_fused(
    model: Siren, x: torch.Tensor, backward_dtype: torch.dtype = torch.float32, compile: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``f(x)`` (B,) and ``grad f(x)`` (B, 3), differentiable with respect to the model's
    parameters (not ``x``) through a hand-written backward whose matrix products run in
    ``backward_dtype``; ``compile`` runs both passes under ``torch.compile``."""
    params: list[torch.Tensor] = []
    for layer in model.sine_layers:
        params += [layer.linear.weight, layer.linear.bias]
    params += [model.output.weight, model.output.bias]
    omegas = tuple(layer.omega_0 for layer in model.sine_layers)
    return _ValueAndGradient.apply(x.detach(), omegas, backward_dtype, compile, *params)


@functools.cache
def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16): without it a
    bfloat16 product is emulated and no faster. Read from ``/proc/cpuinfo``; elsewhere False."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.cache
def cpp_compiler_found() -> bool:
    """Whether a C++ compiler is on the PATH, which ``torch.compile`` needs on the CPU. Looked up
    once: the answer is asked for every training step."""
    return any(shutil.which(name) for name in ("c++", "g++", "clang++"))


@functools.cache
def triton_found() -> bool:
    """Whether Triton, which ``torch.compile`` needs for CUDA, can be imported."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def fused_settings(backward_precision: str, compile: str, device: torch.device) -> tuple[torch.dtype, bool]:
    """The backward dtype and whether to compile, from ``TrainConfig.backward_precision`` and
    ``TrainConfig.compile`` on ``device`` (see their docstrings for what ``auto`` picks)."""
    cpu = device.type == "cpu"
    if backward_precision == "auto":
        low = cpu and cpu_has_native_bfloat16()
    else:
        low = backward_precision == "bfloat16"
    if compile == "auto":
        compiled = cpu and cpp_compiler_found()
    else:
        compiled = compile == "on"
    return (torch.bfloat16 if low else torch.float32), compiled
