"""Spatial derivatives of the field by automatic differentiation."""

from __future__ import annotations

import torch
from torch import nn


def sdf_and_gradient(model: nn.Module, x: torch.Tensor, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Values ``f(x)`` (B,) and spatial gradients ``grad f(x)`` (B, 3).

    ``create_graph=True`` keeps the graph so that a loss on the gradient can be back-propagated
    (the double backward of the SIREN loss) or differentiated again (:func:`divergence`).
    """
    if not x.requires_grad:
        x = x.requires_grad_(True)
    f = model(x)
    (grad,) = torch.autograd.grad(f.sum(), x, create_graph=create_graph)
    return f, grad


def divergence(grad: torch.Tensor, x: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
    """``div grad f`` (the Laplacian of f) at ``x[rows]``, from a gradient built with a graph.

    One backward pass per axis: the diagonal of the Hessian, summed. Rows are independent (the
    network maps each point alone), so summing a column over the batch before differentiating
    gives each point's own second derivative.
    """
    total = torch.zeros_like(grad[rows, 0])
    for axis in range(3):
        (second,) = torch.autograd.grad(grad[rows, axis].sum(), x, create_graph=True)
        total = total + second[rows, axis]
    return total


def forward_jets(model: nn.Module, x: torch.Tensor, laplacian: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Values, gradients and (optionally) Laplacians of a SIREN in one forward pass.

    Forward-mode propagation through the sine layers instead of double backward: with
    ``z = omega (W h + b)`` and ``h' = sin z``, the Jacobian rows ``dz = omega W dh`` and
    ``dh' = cos(z) dz``, and the Laplacian ``lap h' = cos(z) lap z - sin(z) |dz|^2`` with
    ``lap z = omega W lap h``. The result is an ordinary autograd graph, so one backward pass
    trains through it. DiGS's divergence by autograd costs three extra backward passes; here it
    costs one extra matrix product per layer.

    Shapes: ``x`` (B, 3) -> f (B,), grad (B, 3), lap (B,) or ``None``.
    """
    layers = model.layers
    first = layers[0]
    omega = first.omega_0
    z = omega * first.linear(x)  # (B, n)
    dz = (omega * first.linear.weight).T.unsqueeze(0)  # (1, 3, n): d z / d x, the same for every row
    sin, cos = torch.sin(z), torch.cos(z)
    h = sin
    dh = cos.unsqueeze(1) * dz  # (B, 3, n)
    lap = -sin * dz.square().sum(dim=1) if laplacian else None  # first layer: lap z = 0
    for layer in layers[1:]:
        weight = layer.linear.weight
        omega = layer.omega_0
        z = omega * layer.linear(h)
        dz = omega * (dh @ weight.T)  # (B, 3, n)
        sin, cos = torch.sin(z), torch.cos(z)
        if laplacian:
            lap = cos * (omega * (lap @ weight.T)) - sin * dz.square().sum(dim=1)
        h = sin
        dh = cos.unsqueeze(1) * dz
    out_weight = model.output.weight  # (1, n)
    f = model.output(h).squeeze(-1)
    grad = (dh @ out_weight.T).squeeze(-1)  # (B, 3)
    lap_f = (lap @ out_weight.T).squeeze(-1) if laplacian else None
    return f, grad, lap_f
