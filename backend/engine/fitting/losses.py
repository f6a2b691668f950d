"""Loss terms of the signed-distance fit: SIREN's (Sitzmann et al. 2020, eq. 6) for oriented
clouds, DiGS's (Ben-Shabat et al. 2022) for unoriented ones.

The functions take values and gradients of the field, not the network, so they can be checked
against analytic SDFs. Each returns a dict of named, already weighted terms plus ``total``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..config.reconstruction import OrientedLossConfig, UnorientedLossConfig


def surface_term(f_surface: torch.Tensor) -> torch.Tensor:
    """Mean ``|f|`` on the surface points: the zero level set passes through the cloud."""
    return f_surface.abs().mean()


def normal_term(grad_surface: torch.Tensor, normals: torch.Tensor, directions_only: bool = False) -> torch.Tensor:
    """Mean ``1 - cos(grad f, n)``: the gradient points along the given outward normal.

    With ``directions_only`` it is ``1 - |cos|``: the gradient is parallel to the normal,
    whichever way the normal points. A zero normal means "no normal known here" (the unoriented
    refinement leaves the points whose sign is disputed so): such points are left out of the mean.
    """
    cos = F.cosine_similarity(grad_surface, normals, dim=-1)
    known = (normals != 0).any(dim=-1).to(cos.dtype)
    return ((1.0 - (cos.abs() if directions_only else cos)) * known).sum() / known.sum().clamp(min=1.0)


def eikonal_term(*grads: torch.Tensor, stands_for: Sequence[int] | None = None) -> torch.Tensor:
    """Mean ``| |grad f| - 1 |`` over all given gradient sets: a distance field has unit slope.

    With ``stands_for``, set ``i`` is a random sample standing for ``stands_for[i]`` rows: its
    mean weighs as that many, so the result estimates the mean over all of them without bias.
    """
    deviations = [(g.norm(dim=-1) - 1.0).abs() for g in grads]
    if stands_for is None:
        return torch.cat(deviations).mean()
    total = sum(d.mean() * rows for d, rows in zip(deviations, stands_for) if len(d))
    return total / max(1, sum(stands_for))


def off_surface_term(f_off: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mean ``exp(-alpha |f|)`` away from the surface: no zero crossings in empty space."""
    return torch.exp(-alpha * f_off.abs()).mean()


def divergence_term(div: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Mean ``|div grad f|`` clamped to ``[low, high]`` (DiGS's L1 divergence penalty).

    The clamp gives no gradient below ``low`` (a smooth field is left alone) nor above ``high``
    (the sinks at the medial axis, where the divergence of a true SDF blows up, do not dominate).
    """
    return div.abs().clamp(low, high).mean()


def oriented_loss(
    f_surface: torch.Tensor,
    grad_surface: torch.Tensor,
    normals: torch.Tensor,
    f_box: torch.Tensor,
    grad_box: torch.Tensor,
    grad_near: torch.Tensor | None,
    weights: OrientedLossConfig,
    off_surface_rows: int | None = None,
) -> dict[str, torch.Tensor]:
    """The SIREN loss for a cloud with normals.

    The eikonal term covers the surface, box and near points; the off-surface term the box
    points only (see :mod:`siren_recon.engine.fitting.sampling` for why). ``grad_box`` and ``grad_near``
    may be a random sample standing for ``off_surface_rows`` box and near rows (see
    ``OrientedLossConfig.eikonal_share``); ``None``: they are all of them.
    """
    off = torch.cat([grad_box] + ([grad_near] if grad_near is not None else []))
    stands_for = None if off_surface_rows is None else (len(grad_surface), off_surface_rows)
    terms = {
        "surface": weights.surface * surface_term(f_surface),
        "normal": weights.normal * normal_term(grad_surface, normals, weights.normal_directions_only),
        "eikonal": weights.eikonal * eikonal_term(grad_surface, off, stands_for=stands_for),
        "off_surface": weights.off_surface * off_surface_term(f_box, weights.off_surface_alpha),
    }
    terms["total"] = sum(terms.values())  # type: ignore[assignment]
    return terms


def unoriented_loss(
    f_surface: torch.Tensor,
    f_box: torch.Tensor,
    grads: list[torch.Tensor],
    div: torch.Tensor | None,
    divergence_weight: float,
    weights: UnorientedLossConfig,
) -> dict[str, torch.Tensor]:
    """The DiGS loss for a cloud without normals: no normal term exists at all.

    ``div`` holds ``div grad f`` at the box and near points; it may be ``None`` once the
    annealed weight has reached 0, which spares its three extra backward passes.
    """
    terms = {
        "surface": weights.surface * surface_term(f_surface),
        "eikonal": weights.eikonal * eikonal_term(*grads),
        "off_surface": weights.off_surface * off_surface_term(f_box, weights.off_surface_alpha),
    }
    if div is not None and divergence_weight > 0:
        terms["divergence"] = divergence_weight * divergence_term(
            div, weights.divergence_clamp_low, weights.divergence_clamp_high
        )
    else:
        terms["divergence"] = torch.zeros((), device=f_surface.device)
    terms["total"] = sum(terms.values())  # type: ignore[assignment]
    return terms
