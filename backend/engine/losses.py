"""Loss terms of the SIREN signed-distance fit (Sitzmann et al. 2020, eq. 6).

The functions take values and gradients of the field, not the network, so they can be checked
against analytic SDFs. Each returns a dict of named, already weighted terms plus ``total``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import OrientedLossWeights


def surface_term(f_surface: torch.Tensor) -> torch.Tensor:
    """Mean ``|f|`` on the surface points: the zero level set passes through the cloud."""
    return f_surface.abs().mean()


def normal_term(grad_surface: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos(grad f, n)``: the gradient points along the given outward normal."""
    return (1.0 - F.cosine_similarity(grad_surface, normals, dim=-1)).mean()


def eikonal_term(*grads: torch.Tensor) -> torch.Tensor:
    """Mean ``| |grad f| - 1 |`` over all given gradient sets: a distance field has unit slope."""
    norms = torch.cat([g.norm(dim=-1) for g in grads])
    return (norms - 1.0).abs().mean()


def off_surface_term(f_off: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mean ``exp(-alpha |f|)`` away from the surface: no zero crossings in empty space."""
    return torch.exp(-alpha * f_off.abs()).mean()


def oriented_loss(
    f_surface: torch.Tensor,
    grad_surface: torch.Tensor,
    normals: torch.Tensor,
    f_box: torch.Tensor,
    grad_box: torch.Tensor,
    grad_near: torch.Tensor | None,
    weights: OrientedLossWeights,
) -> dict[str, torch.Tensor]:
    """The SIREN loss for a cloud with normals.

    The eikonal term covers the surface, box and near points; the off-surface term the box
    points only (see :mod:`backend.engine.sampling` for why).
    """
    grads = [grad_surface, grad_box] + ([grad_near] if grad_near is not None and len(grad_near) else [])
    terms = {
        "surface": weights.surface * surface_term(f_surface),
        "normal": weights.normal * normal_term(grad_surface, normals),
        "eikonal": weights.eikonal * eikonal_term(*grads),
        "off_surface": weights.off_surface * off_surface_term(f_box, weights.off_surface_alpha),
    }
    terms["total"] = sum(terms.values())  # type: ignore[assignment]
    return terms
