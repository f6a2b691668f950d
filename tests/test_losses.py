"""Loss terms on an analytic signed distance field."""

from __future__ import annotations

import pytest
import torch

from siren_recon.engine.config.reconstruction import OrientedLossConfig
from siren_recon.engine.fitting.losses import eikonal_term, oriented_loss


def sphere_sdf(x: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    norm = x.norm(dim=-1)
    return norm - radius, x / norm[:, None]


def test_loss_terms_vanish_for_the_exact_sphere_sdf():
    gen = torch.Generator().manual_seed(0)
    radius = 0.5
    normals = torch.randn(4000, 3, generator=gen)
    normals = normals / normals.norm(dim=1, keepdim=True)
    surface = normals * radius
    box = torch.rand(4000, 3, generator=gen) * 2 - 1
    near = surface + 0.02 * torch.randn(4000, 3, generator=gen)
    f_s, g_s = sphere_sdf(surface, radius)
    f_b, g_b = sphere_sdf(box, radius)
    _, g_n = sphere_sdf(near, radius)
    weights = OrientedLossConfig()
    terms = oriented_loss(f_s, g_s, normals, f_b, g_b, g_n, weights)
    assert set(terms) == {"surface", "normal", "eikonal", "off_surface", "total"}
    assert float(terms["surface"]) < 1e-3
    assert float(terms["normal"]) < 1e-3
    assert float(terms["eikonal"]) < 1e-3
    # exp(-100 |f|) is only non-negligible for box points within a few hundredths of the sphere:
    # their share of the cube is about 4 pi r^2 * 2 / 100 / 8, so the mean is about 0.008.
    assert float(terms["off_surface"]) / weights.off_surface < 0.015
    assert torch.isclose(terms["total"], sum(v for k, v in terms.items() if k != "total"))


def test_loss_terms_detect_a_wrong_field():
    gen = torch.Generator().manual_seed(1)
    normals = torch.randn(1000, 3, generator=gen)
    normals = normals / normals.norm(dim=1, keepdim=True)
    surface = normals * 0.5
    f_s, g_s = sphere_sdf(surface, 0.4)  # the level set is off by 0.1
    flipped = -g_s  # and the gradient points inward
    box = torch.rand(1000, 3, generator=gen) * 2 - 1
    f_b, g_b = sphere_sdf(box, 0.4)
    terms = oriented_loss(f_s, 2 * flipped, normals, f_b, g_b, None, OrientedLossConfig())
    assert abs(float(terms["surface"]) - 3e3 * 0.1) < 1.0
    assert abs(float(terms["normal"]) - 1e2 * 2.0) < 1e-2
    assert float(terms["eikonal"]) > 5e1 * 0.4


def test_a_sampled_eikonal_set_weighs_as_the_rows_it_stands_for():
    gen = torch.Generator().manual_seed(2)
    surface = torch.randn(100, 3, generator=gen)
    off = torch.randn(400, 3, generator=gen)
    deviation = lambda g: (g.norm(dim=-1) - 1).abs()  # noqa: E731
    assert float(eikonal_term(surface, off)) == pytest.approx(
        float(torch.cat([deviation(surface), deviation(off)]).mean())
    )
    # 40 rows standing for 400: the surface's 100 rows weigh 1/5, the sample's mean 4/5
    sample = off[:40]
    expected = (deviation(surface).sum() + deviation(sample).mean() * 400) / 500
    assert float(eikonal_term(surface, sample, stands_for=(100, 400))) == pytest.approx(float(expected))
    assert float(eikonal_term(surface, sample, stands_for=(100, 400))) != pytest.approx(
        float(eikonal_term(surface, sample))
    )
    # a sample standing for exactly its own rows is the plain mean
    assert float(eikonal_term(surface, off, stands_for=(100, 400))) == pytest.approx(float(eikonal_term(surface, off)))
