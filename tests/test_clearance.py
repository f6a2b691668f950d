"""The clearance term: no zero crossing far from every input point (backend/engine/clearance.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from backend.engine.clearance import Clearance, clearance_term, median_spacing
from backend.engine.errors import ConfigError
from backend.engine.derivatives import sdf_and_gradient
from backend.engine.geometric_init import sphere_init
from backend.engine.model import Siren
from backend.engine.sampling import Batch, PointSampler

from .shapes import small_config, sphere_cloud

RADIUS = 0.6
CAP = 0.3


@pytest.fixture(scope="module")
def cloud() -> np.ndarray:
    points, _ = sphere_cloud(5000, RADIUS, seed=2)
    return points


@pytest.fixture(scope="module")
def clearance(cloud) -> Clearance:
    return Clearance.build(cloud, 4.0, CAP, torch.device("cpu"), resolution=64)


def test_the_margin_is_the_median_spacing_times_the_given_count(cloud, clearance):
    nearest_other = cKDTree(cloud).query(cloud, k=2)[0][:, 1]
    assert median_spacing(cloud) == pytest.approx(float(np.median(nearest_other)))
    assert clearance.margin == pytest.approx(4.0 * float(np.median(nearest_other)))


def test_the_needed_value_never_exceeds_the_distance_less_the_margin(cloud, clearance):
    """A lower bound (so the true field is never penalised), zero within the margin of a point,
    and within a grid cell's diagonal of the exact value everywhere else (the node's distance
    is off by at most the distance to it, and that is taken off again)."""
    q = torch.rand(20_000, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    exact = np.maximum(np.minimum(cKDTree(cloud).query(q.numpy())[0], CAP) - clearance.margin, 0.0)
    needed = clearance.needed(q).numpy()
    assert (needed <= exact + 1e-6).all()
    assert (needed[exact == 0] == 0).all()
    diagonal = 2 * np.sqrt(3) / 63  # the grid's 64 nodes span 2
    assert (exact - needed <= diagonal + 1e-6).all()
    assert needed.max() <= CAP - clearance.margin + 1e-6
    assert (needed > 0).mean() > 0.5  # most of the cube is far from the sphere


def test_the_true_distance_field_meets_it_and_a_crossing_in_empty_space_does_not(cloud, clearance):
    q = torch.rand(20_000, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    needed = clearance.needed(q)
    sphere = q.norm(dim=1) - RADIUS
    assert float(clearance_term(sphere, needed)) == 0.0
    # a small second surface inside the object, where no point is: the inner sheet of a bad fit
    with_inner_sheet = sphere.sign() * torch.minimum(sphere.abs(), (q.norm(dim=1) - 0.15).abs())
    assert float(clearance_term(with_inner_sheet, needed)) > 1e-4


def test_the_sampler_looks_up_the_box_then_the_near_points(cloud, clearance):
    points = torch.as_tensor(cloud, dtype=torch.float32)
    config = small_config().sampling
    batch = PointSampler(points, None, config, torch.Generator().manual_seed(0), clearance=clearance).sample()
    assert batch.clearance is not None and batch.clearance.shape == (config.box_points + config.near_points,)
    torch.testing.assert_close(batch.clearance, clearance.needed(torch.cat([batch.box, batch.near])))
    plain = PointSampler(points, None, config, torch.Generator().manual_seed(0)).sample()
    assert plain.clearance is None


@pytest.mark.parametrize("share", [1.0, 0.3])
def test_the_oriented_loss_adds_it_over_the_off_surface_rows_that_took_a_value(clearance, share):
    """Every box row and the near rows inside the eikonal share (the others took no value)."""
    from backend.engine.trainer import compute_loss

    gen = torch.Generator().manual_seed(3)
    surface = torch.nn.functional.normalize(torch.randn(200, 3, generator=gen), dim=1) * RADIUS
    box = torch.rand(150, 3, generator=gen) * 2 - 1
    near = surface[:60] + 0.05 * torch.randn(60, 3, generator=gen)
    needed = clearance.needed(torch.cat([box, near]))
    batch = Batch(surface, surface / RADIUS, box, near, clearance=needed)
    config = small_config(oriented__eikonal_share=share)
    torch.manual_seed(0)
    model = Siren(config.model)
    sphere_init(model, 0.2, False, torch.Generator().manual_seed(1))  # a small sphere: crossings far from the cloud
    near_rows = 60 if share == 1.0 else 18  # ceil(0.3 * 60)
    f, _ = sdf_and_gradient(model, torch.cat([box, near[:near_rows]]), create_graph=False)
    expected = config.unoriented.refine_clearance * float(clearance_term(f.detach(), needed[: 150 + near_rows]))
    terms = compute_loss(model, batch, config, "oriented")
    assert expected > 0
    assert float(terms["clearance"].detach()) == pytest.approx(expected, rel=1e-4)
    assert "clearance" not in compute_loss(model, Batch(surface, surface / RADIUS, box, near), config, "oriented")


@pytest.mark.parametrize("key", ["unoriented.refine_clearance", "unoriented.clearance_spacings"])
def test_a_negative_clearance_setting_is_refused(key):
    with pytest.raises(ConfigError, match=f"{key} must be >= 0"):
        small_config(**{key.replace(".", "__"): -1.0})
