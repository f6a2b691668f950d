"""The clearance term: no zero crossing far from every input point (engine/unoriented/clearance.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from siren_recon.engine.errors import ConfigError
from siren_recon.engine.field.derivatives import sdf_and_gradient
from siren_recon.engine.field.geometric_init import sphere_init
from siren_recon.engine.field.model import Siren
from siren_recon.engine.fitting.regularisers import OffSurface
from siren_recon.engine.fitting.sampling import Batch, PointSampler
from siren_recon.engine.unoriented.clearance import Clearance, ClearanceRegulariser, clearance_term
from siren_recon.engine.unoriented.cube_grid import cube_nodes

from .shapes import small_config, sphere_cloud

RADIUS = 0.6
CAP = 0.3
HALF_CELL = 1.0 / 63  # the grid's 64 nodes span 2
INNER = 0.4  # radius of a stray second surface: 0.2 from the cloud, inside the cap


def sphere_sdf(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=1) - RADIUS


def with_inner_sheet(x: torch.Tensor) -> torch.Tensor:
    """The sphere's field with a small second surface inside, where no point is: a bad fit."""
    sphere = sphere_sdf(x)
    return sphere.sign() * torch.minimum(sphere.abs(), (x.norm(dim=1) - INNER).abs())


@pytest.fixture(scope="module")
def cloud() -> np.ndarray:
    points, _ = sphere_cloud(5000, RADIUS, seed=2)
    return points


@pytest.fixture(scope="module")
def clearance(cloud) -> Clearance:
    return Clearance.build(cloud, 4.0, CAP, torch.device("cpu"), resolution=64)


def test_the_margin_is_the_median_spacing_times_the_given_count(cloud, clearance):
    nearest_other = cKDTree(cloud).query(cloud, k=2)[0][:, 1]
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
    assert float(clearance_term(sphere_sdf(q), needed)) == 0.0
    assert float(clearance_term(with_inner_sheet(q), needed)) > 1e-4


def test_the_shell_is_every_node_between_the_margin_and_the_cap(cloud, clearance):
    nodes = cube_nodes(64)
    distance = cKDTree(cloud).query(nodes)[0]
    inside = (distance > clearance.margin) & (distance < CAP)
    shell = clearance.shell.numpy()
    assert abs(len(shell) - int(inside.sum())) <= 0.001 * inside.sum()  # float32 at the two edges
    shell_distance = cKDTree(cloud).query(shell)[0]
    assert (shell_distance > clearance.margin - 1e-5).all() and (shell_distance < CAP + 1e-5).all()


def test_the_violated_nodes_are_the_crossings_too_far_from_the_points(clearance):
    """Nodes within about a cell of a zero crossing that the clearance forbids; not the nodes
    where a field is merely flatter than a distance."""
    assert len(clearance.violated(sphere_sdf)) == 0
    def flat(x: torch.Tensor) -> torch.Tensor:  # below the needed value far out, but no crossing there
        return 2 * HALF_CELL * 3**0.5 + 0.1 * sphere_sdf(x).abs()

    assert (flat(clearance.shell) < clearance.needed(clearance.shell)).float().mean() > 0.3
    assert len(clearance.violated(flat)) == 0
    bad = clearance.violated(with_inner_sheet)
    assert 0 < len(bad) < 0.1 * len(clearance.shell)
    assert ((bad.norm(dim=1) - INNER).abs() < 2 * HALF_CELL * 3**0.5).all()  # within a cell diagonal of the sheet
    f = with_inner_sheet(clearance.shell).abs()
    expected = clearance.shell[(f < clearance.needed(clearance.shell)) & (f < 2 * HALF_CELL * 3**0.5)]
    torch.testing.assert_close(bad, expected)


def test_refresh_aims_the_shell_points_at_the_violated_nodes(cloud, clearance):
    points = torch.as_tensor(cloud, dtype=torch.float32)
    regulariser = ClearanceRegulariser(clearance, 1e3, 500)
    sampler = PointSampler(points, None, small_config().sampling, torch.Generator().manual_seed(0), [regulariser])
    bad = clearance.violated(with_inner_sheet)
    assert sampler.sample().extra[0].shape == (0, 3)  # nothing to aim at before a look
    sampler.refresh(with_inner_sheet)
    aimed = sampler.sample()
    (shell,) = aimed.extra
    assert shell.shape == (500, 3)
    nearest_bad = (shell[:, None, :] - bad[None, :, :]).abs().amax(dim=2).amin(dim=1)
    assert (nearest_bad <= HALF_CELL + 1e-6).all()  # each within its node's cell
    # the term covers the box, the near and the shell points, each at its needed value
    f = with_inner_sheet
    step = OffSurface(aimed.box, aimed.near, f(aimed.box), f(aimed.near), shell)
    needed = clearance.needed(torch.cat([aimed.box, aimed.near, shell]))
    expected = 1e3 * clearance_term(torch.cat([f(aimed.box), f(aimed.near), f(shell)]), needed)
    torch.testing.assert_close(regulariser.loss(f, step), expected)
    sampler.refresh(sphere_sdf)  # nothing wrong any more: no shell points
    assert sampler.sample().extra[0].shape == (0, 3)


def test_the_sampler_looks_up_the_box_then_the_near_points(cloud, clearance):
    points = torch.as_tensor(cloud, dtype=torch.float32)
    config = small_config().sampling
    regulariser = ClearanceRegulariser(clearance, 1e3, 0)
    batch = PointSampler(points, None, config, torch.Generator().manual_seed(0), [regulariser]).sample()
    assert len(batch.extra) == 1 and batch.extra[0].shape == (0, 3)  # no shell points asked for
    plain = PointSampler(points, None, config, torch.Generator().manual_seed(0)).sample()
    assert plain.extra == ()
    # the same draws with the regulariser as without: it adds its points after the sampler's own
    torch.testing.assert_close(batch.box, plain.box)
    torch.testing.assert_close(batch.near, plain.near)
    f = sphere_sdf(batch.box), sphere_sdf(batch.near)
    needed = clearance.needed(torch.cat([batch.box, batch.near]))
    torch.testing.assert_close(regulariser.loss(sphere_sdf, OffSurface(batch.box, batch.near, *f, batch.extra[0])),
                               1e3 * clearance_term(torch.cat(f), needed))


@pytest.mark.parametrize("share", [1.0, 0.3])
def test_the_oriented_loss_adds_it_over_the_off_surface_rows_that_took_a_value(clearance, share):
    """Every box row, the near rows inside the eikonal share (the others took no value) and the
    shell rows."""
    from siren_recon.engine.fitting.trainer import compute_loss

    gen = torch.Generator().manual_seed(3)
    surface = torch.nn.functional.normalize(torch.randn(200, 3, generator=gen), dim=1) * RADIUS
    box = torch.rand(150, 3, generator=gen) * 2 - 1
    near = surface[:60] + 0.05 * torch.randn(60, 3, generator=gen)
    shell = clearance.sample(40, gen, clearance.shell)
    needed = clearance.needed(torch.cat([box, near, shell]))
    batch = Batch(surface, surface / RADIUS, box, near, extra=(shell,))
    config = small_config(oriented__eikonal_share=share)
    torch.manual_seed(0)
    model = Siren(config.model)
    sphere_init(model, 0.2, False, torch.Generator().manual_seed(1))  # a small sphere: crossings far from the cloud
    near_rows = 60 if share == 1.0 else 18  # ceil(0.3 * 60)
    f, _ = sdf_and_gradient(model, torch.cat([box, near[:near_rows], shell]), create_graph=False)
    rows = torch.cat([needed[: 150 + near_rows], needed[210:]])
    expected = config.refinement.clearance * float(clearance_term(f.detach(), rows))
    regulariser = ClearanceRegulariser(clearance, config.refinement.clearance, 40)
    terms = compute_loss(model, batch, config, "oriented", regularisers=[regulariser])
    assert expected > 0
    assert float(terms["clearance"].detach()) == pytest.approx(expected, rel=1e-4)
    assert "clearance" not in compute_loss(model, Batch(surface, surface / RADIUS, box, near), config, "oriented")


@pytest.mark.parametrize("key, value", [("refinement.clearance", -1.0), ("refinement.clearance_spacings", -1.0),
                                        ("refinement.noisy_clearance_spacings", -1.0),
                                        ("refinement.clearance_points", -1)])
def test_a_negative_clearance_setting_is_refused(key, value):
    with pytest.raises(ConfigError, match=f"{key} must be >= 0"):
        small_config(**{key.replace(".", "__"): value})


@pytest.mark.slow
def test_training_looks_for_the_violated_nodes_as_it_goes(cloud, clearance):
    from siren_recon.engine.fitting.trainer import MINE_EVERY, train

    points = torch.as_tensor(cloud, dtype=torch.float32)
    normals = points / RADIUS
    config = small_config(train__iterations=2 * MINE_EVERY)
    regulariser = ClearanceRegulariser(clearance, config.refinement.clearance, 100)
    sampler = PointSampler(points, normals, config.sampling, torch.Generator().manual_seed(0), [regulariser])
    looked = []
    refresh = sampler.refresh
    sampler.refresh = lambda model: (looked.append(1), refresh(model))  # type: ignore[method-assign]
    torch.manual_seed(0)
    train(Siren(config.model), sampler, config, "oriented")
    assert len(looked) == 2  # after MINE_EVERY steps and again MINE_EVERY steps later
    assert regulariser.pool is not None
