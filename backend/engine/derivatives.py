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
