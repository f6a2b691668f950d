"""Unoriented mode (DiGS): divergence, its schedule, geometric initialisation, mode choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siren_recon.engine.config.reconstruction import (
    ORIENTATIONS,
    DivergenceSchedule,
    ModelConfig,
    NormalEstimationConfig,
    ReconstructionConfig,
)
from siren_recon.engine.errors import ConfigError, InputError
from siren_recon.engine.field.derivatives import divergence, sdf_and_gradient
from siren_recon.engine.field.geometric_init import sphere_init
from siren_recon.engine.field.model import Siren
from siren_recon.engine.fitting.losses import normal_term
from siren_recon.engine.fitting.sampling import Batch
from siren_recon.engine.meshing import extract_mesh
from siren_recon.engine.pipeline import choose_mode, reconstruct_points

from .numerics_cases import euler_characteristic, torus_distance, torus_points
from .shapes import small_config, sphere_cloud


class Distance(torch.nn.Module):
    """The analytic field |x| (a point's SDF), whose Laplacian is 2 / |x| in 3D."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.norm(dim=-1)


def test_divergence_matches_the_closed_form_for_a_sphere_sdf():
    x = (torch.rand(500, 3, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    x = x[x.norm(dim=1) > 0.1].detach().requires_grad_(True)
    _, grad = sdf_and_gradient(Distance(), x)
    div = divergence(grad, x)
    torch.testing.assert_close(div, 2.0 / x.norm(dim=1), rtol=1e-10, atol=1e-10)
    part = divergence(grad, x, slice(10, 20))
    torch.testing.assert_close(part, div[10:20])


def test_divergence_of_the_network_matches_finite_differences():
    torch.manual_seed(0)
    model = Siren(ModelConfig(hidden_features=32, hidden_layers=2, init="siren")).double()
    x = (torch.rand(40, 3, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    _, grad = sdf_and_gradient(model, x)
    div = divergence(grad, x)
    h = 1e-4
    with torch.no_grad():
        centre = model(x)
        numeric = sum(
            (model(x + h * e) - 2 * centre + model(x - h * e)) / h**2 for e in torch.eye(3, dtype=torch.float64)
        )
    torch.testing.assert_close(div, numeric, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    "shape, expected",
    [
        ("linear", [100.0, 100.0, 100.0, 50.0, 0.0, 0.0]),
        ("quintic", [100.0, 100.0, 100.0, 100.0 * 0.5**5, 0.0, 0.0]),
        ("step", [100.0, 100.0, 100.0, 100.0, 0.0, 0.0]),
    ],
)
def test_divergence_schedule_values(shape, expected):
    schedule = DivergenceSchedule(weight=100.0, hold_until=0.2, zero_at=0.4, shape=shape)
    at = [0, 100, 199, 300, 400, 999]
    assert [pytest.approx(schedule.value(i, 1000)) for i in at] == expected


@pytest.mark.parametrize("multi_frequency", [False, True])
@pytest.mark.parametrize("hidden_layers", [0, 1, 3])
def test_geometric_init_starts_as_a_sphere(multi_frequency, hidden_layers):
    model = Siren(ModelConfig(hidden_features=128, hidden_layers=hidden_layers))
    sphere_init(model, 0.5, multi_frequency, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float(model(torch.zeros(1, 3))) < 0
        corners = torch.tensor(
            [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=torch.float32
        )
        assert (model(corners) > 0).all()
    verts, _ = extract_mesh(model, -np.ones(3), np.ones(3), 48, 1 << 16, torch.device("cpu"))
    radii = np.linalg.norm(verts, axis=1)
    assert np.abs(radii - 0.5).max() < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("refine_share, seed", [(0.0, 0), (0.5, 0), (0.5, 1)])
def test_unoriented_training_on_a_torus_puts_the_tube_inside_and_the_hole_outside(refine_share, seed):
    """Both stages on a torus: the tube's inside negative, the hole and the outside positive, the
    surface on the tube; the two-stage run (the default) also has the torus's topology. DiGS
    alone does not, reliably, at this budget: its 500 steps leave a few small extra handles on
    5 of 9 runs over seeds and numerics (1,000 steps on 1 of 8), a chaotic outcome that the
    refinement removes (genus one on every run measured, and ten times closer to the tube;
    docs/experiments.md)."""
    events = []
    config = small_config(train__iterations=500, train__seed=seed, refinement__share=refine_share)
    result = reconstruct_points(torus_points(3000), None, config, on_progress=events.append)
    assert result.mode == "unoriented" and {e.mode for e in events} == {"unoriented"}
    assert [e.iteration for e in events] == list(range(25, 501, 25)) and {e.total for e in events} == {500}
    digs = [e for e in events if e.iteration <= 500 * (1 - refine_share)]
    assert all("normal" not in e.losses and "divergence" in e.losses for e in digs)  # DiGS has no normal term
    if refine_share:  # the refinement fits estimated normals, oriented by the DiGS field
        assert all("normal" in e.losses for e in events if e.iteration > 250)
        assert euler_characteristic(result.vertices, result.faces) == 0  # genus one
    sdf = result.field.sdf(
        np.array([[0.6, 0.0, 0.0], [0.0, -0.6, 0.0], [0.0, 0.0, 0.0], [0.95, 0.0, 0.0], [0.0, 0.0, 0.5]])
    )
    assert sdf[0] < 0 and sdf[1] < 0  # inside the tube
    assert (sdf[2:] > 0).all()  # the hole and the outside (within the cloud's box: the trained domain)
    # the vertices' mean distance to the tube (radius 0.25): 0.0009-0.0010 after the refinement on every run
    # measured, 0.002-0.014 after DiGS alone (its extra handles stand off the tube)
    assert np.abs(torus_distance(result.vertices)).mean() < (0.003 if refine_share else 0.03)


def test_auto_mode_follows_the_presence_of_normals():
    assert choose_mode("auto", True) == "oriented"
    assert choose_mode("auto", False) == "unoriented"
    assert choose_mode("unoriented", True) == "unoriented"
    points, normals = sphere_cloud(400)
    config = small_config(train__iterations=2, mesh__resolution=16)
    assert reconstruct_points(points, normals, config).mode == "oriented"
    assert reconstruct_points(points, None, config).mode == "unoriented"


def test_bad_normals_are_refused_in_auto_mode_not_silently_ignored():
    points, normals = sphere_cloud(400)
    normals[0] = 0.0
    with pytest.raises(InputError, match="zero length"):
        reconstruct_points(points, normals, small_config(mode="auto"))


def test_direction_only_normal_term_ignores_flips():
    gen = torch.Generator().manual_seed(0)
    grad = torch.randn(100, 3, generator=gen)
    normals = grad / grad.norm(dim=1, keepdim=True)
    flips = torch.where(torch.rand(100, generator=gen) < 0.5, -1.0, 1.0)[:, None]
    assert float(normal_term(grad, normals * flips, directions_only=True)) < 1e-6
    assert float(normal_term(grad, normals * flips)) > 0.5


@pytest.mark.parametrize("hidden_layers", [0, 1, 2, 4])
@pytest.mark.parametrize("width", [16, 64])
@pytest.mark.parametrize("init", ["siren", "mfgi"])
def test_forward_jets_match_autograd(hidden_layers, width, init):
    """The fast forward-mode derivatives equal autograd's for every network shape the engine builds."""
    from siren_recon.engine.field.derivatives import forward_jets

    torch.manual_seed(hidden_layers * 100 + width)
    model = Siren(ModelConfig(hidden_features=width, hidden_layers=hidden_layers, init=init))
    if init != "siren":
        sphere_init(model, 0.5, True, torch.Generator().manual_seed(1))
    x = (torch.rand(300, 3) * 2 - 1).requires_grad_(True)
    f, grad = sdf_and_gradient(model, x)
    lap = divergence(grad, x)
    f2, grad2, lap2 = forward_jets(model, x.detach(), laplacian=True)
    # the geometric init's output is a difference of sums of about 4 * width (cancellation), so
    # float32 rounding of two equal formulas differs by ~1e-5 of those sums
    torch.testing.assert_close(f2, f, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad2, grad, rtol=1e-4, atol=1e-4 * float(grad.abs().max()))
    torch.testing.assert_close(lap2, lap, rtol=1e-4, atol=1e-4 * float(lap.abs().max()))
    # and their parameter gradients agree too, so training through either is the same
    loss_a = (grad.norm(dim=-1) - 1).abs().mean() + lap.abs().mean()
    loss_f = (grad2.norm(dim=-1) - 1).abs().mean() + lap2.abs().mean()
    params = list(model.parameters())
    ga = torch.autograd.grad(loss_a, params, allow_unused=True)  # the output bias moves neither
    gf = torch.autograd.grad(loss_f, params, allow_unused=True)
    for p, a, b in zip(params, ga, gf):
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4 * float(a.abs().max()) + 1e-7)


def test_estimated_directions_are_normals_up_to_sign_and_the_field_orients_them():
    import torch

    from siren_recon.engine.config.reconstruction import ModelConfig
    from siren_recon.engine.field.geometric_init import sphere_init
    from siren_recon.engine.field.model import Siren
    from siren_recon.engine.unoriented.normal_estimation import estimate_directions
    from siren_recon.engine.unoriented.refinement import orient_directions

    points, normals = sphere_cloud(3000, radius=0.6, seed=4)
    directions, variation = estimate_directions(points, 30)
    assert np.allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-5)
    assert np.abs(np.einsum("ij,ij->i", directions, normals)).min() > 0.95
    assert float(variation.max()) < 0.02  # a smooth, densely sampled surface
    model = Siren(ModelConfig(hidden_features=32, hidden_layers=1))
    sphere_init(model, 0.5, multi_frequency=False)
    for orientation in ORIENTATIONS:
        config = NormalEstimationConfig(orientation=orientation, rough_share=0.0)
        oriented = orient_directions(model, points.astype(np.float32), config, torch.device("cpu"))
        assert np.einsum("ij,ij->i", oriented, normals).min() > 0.95  # every one outward, like the field


def test_surface_variation_is_zero_on_a_plane_and_a_third_in_a_blob():
    from siren_recon.engine.unoriented.normal_estimation import estimate_directions

    rng = np.random.default_rng(3)
    plane = np.c_[rng.uniform(-1, 1, (2000, 2)), np.zeros(2000)]
    directions, variation = estimate_directions(plane, 30)
    assert float(variation.max()) < 1e-9
    assert np.abs(directions[:, 2]).min() > 0.999
    _, variation = estimate_directions(rng.normal(size=(2000, 3)), 30)
    assert 0.15 < float(np.median(variation)) <= 1 / 3


def test_directions_are_the_same_on_any_number_of_threads(monkeypatch):
    """Chunks of points go to several threads; every chunk is analysed, each point as alone."""
    from siren_recon.engine.unoriented import normal_estimation

    monkeypatch.setattr(normal_estimation, "CHUNK", 300)  # 14 chunks, the last one short
    points, _ = sphere_cloud(4000, radius=0.7, seed=9)
    alone = normal_estimation.estimate_directions(points, 30, scales=3, workers=1)
    for workers in (2, 5):
        threaded = normal_estimation.estimate_directions(points, 30, scales=3, workers=workers)
        np.testing.assert_array_equal(threaded[0], alone[0])
        np.testing.assert_array_equal(threaded[1], alone[1])
    assert np.all(np.isfinite(alone[1])) and np.allclose(np.linalg.norm(alone[0], axis=1), 1.0, atol=1e-5)
    # the directions are the neighbourhoods' own: the sphere's normals up to sign
    assert np.abs(np.einsum("ij,ij->i", alone[0], points / 0.7)).min() > 0.99


def roof(count: int, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Points on two half-planes meeting at a right-angled ridge along y (the edge of a box),
    with their true normals, moved by Gaussian noise of ``noise``."""
    u = rng.uniform(-1, 1, count)
    y = rng.uniform(-1, 1, count)
    left = u < 0  # the ridge at x = 0, z = 0: z = x on the left, z = -x on the right
    points = np.c_[u, y, np.where(left, u, -u)]
    normals = np.where(left[:, None], [-1.0, 0.0, 1.0], [1.0, 0.0, 1.0]) / np.sqrt(2.0)
    return points + rng.normal(scale=noise, size=points.shape), normals


def angle_errors(directions: np.ndarray, normals: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(np.abs(np.einsum("ij,ij->i", directions, normals)), 0.0, 1.0)))


def test_each_point_keeps_the_flattest_of_the_neighbourhood_sizes():
    """Near a sharp edge a large neighbourhood reaches round it and tilts the direction; the
    smallest flat one does not. On noise the large one wins. Trying 60, 30 and 15 neighbours
    gets both: near the edge the 15's errors, on the noisy roof no worse than the 60's."""
    from siren_recon.engine.unoriented.normal_estimation import estimate_directions, scale_sizes

    assert scale_sizes(60, 3) == [60, 30, 15]
    assert scale_sizes(60, 1) == [60]
    assert scale_sizes(8, 3) == [8, 4, 3]
    rng = np.random.default_rng(5)
    points, normals = roof(6000, rng, 0.0)
    wrong = {
        name: float((angle_errors(estimate_directions(points, k, scales=s)[0], normals) > 10).mean())
        for name, k, s in (("60", 60, 1), ("15", 15, 1), ("60-30-15", 60, 3))
    }
    assert wrong["60-30-15"] <= wrong["15"] + 0.002 and wrong["60-30-15"] < 0.6 * wrong["60"], (
        wrong
    )  # measured 3.2%, 3.2%, 6.8% (60 alone)
    points, normals = roof(6000, rng, 0.01)
    mean = {
        name: float(angle_errors(estimate_directions(points, k, scales=s)[0], normals).mean())
        for name, k, s in (("60", 60, 1), ("15", 15, 1), ("60-30-15", 60, 3))
    }
    assert mean["60-30-15"] < 1.1 * mean["60"] and mean["60-30-15"] < 0.8 * mean["15"], (
        mean
    )  # measured 2.7, 3.2 and 7.8 degrees


class CapInvertedSphere(torch.nn.Module):
    """``(|x| - r) tanh(10 (z0 - z))``: the sphere's zero set, but its gradient points inward on the cap z > z0.

    The coherent wrong patch that DiGS leaves on noisy input, in closed form.
    """

    def __init__(self, radius: float, cap: float) -> None:
        super().__init__()
        self.radius, self.cap = radius, cap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.norm(dim=-1) - self.radius) * torch.tanh(10 * (self.cap - x[:, 2]))


def orient_on_cap_inverted_sphere(**settings) -> tuple[np.ndarray, np.ndarray]:
    """Directions oriented against :class:`CapInvertedSphere` (no rough share dropped), and the true normals."""
    from siren_recon.engine.unoriented.refinement import orient_directions

    points, normals = sphere_cloud(3000, radius=0.6, seed=6)
    config = NormalEstimationConfig(rough_share=0.0, **settings)
    return orient_directions(
        CapInvertedSphere(0.6, 0.4), points.astype(np.float32), config, torch.device("cpu")
    ), normals


def test_propagated_signs_outvote_a_field_inverted_on_a_patch():
    by_gradient, normals = orient_on_cap_inverted_sphere(orientation="gradient")
    wrong = float(np.mean(np.einsum("ij,ij->i", by_gradient, normals) < 0))
    assert 0.1 < wrong < 0.25  # the cap: about 1/6 of the sphere
    propagated, _ = orient_on_cap_inverted_sphere(drop_disputed=False)
    assert np.einsum("ij,ij->i", propagated, normals).min() > 0.9


def test_points_whose_gradient_disputes_the_propagated_sign_get_no_normal():
    by_gradient, normals = orient_on_cap_inverted_sphere(orientation="gradient")
    gradient_wrong = np.einsum("ij,ij->i", by_gradient, normals) < 0
    kept, _ = orient_on_cap_inverted_sphere()
    dropped = np.linalg.norm(kept, axis=1) == 0
    assert np.array_equal(dropped, gradient_wrong)  # exactly the inverted cap
    assert np.einsum("ij,ij->i", kept[~dropped], normals[~dropped]).min() > 0.9


def test_the_roughest_neighbourhoods_get_no_normal():
    from siren_recon.engine.config.reconstruction import ModelConfig
    from siren_recon.engine.field.geometric_init import sphere_init
    from siren_recon.engine.field.model import Siren
    from siren_recon.engine.unoriented.refinement import orient_directions

    points, normals = sphere_cloud(3000, radius=0.6, seed=8)
    rng = np.random.default_rng(8)
    noisy = points[:, 0] > 0.45  # a patch with noise far above the sampling spacing
    points[noisy] += rng.normal(scale=0.03, size=(int(noisy.sum()), 3))
    model = Siren(ModelConfig(hidden_features=32, hidden_layers=1))
    sphere_init(model, 0.6, multi_frequency=False)
    share = float(noisy.mean())
    config = NormalEstimationConfig(rough_share=share, drop_disputed=False)
    oriented = orient_directions(model, points.astype(np.float32), config, torch.device("cpu"))
    dropped = np.linalg.norm(oriented, axis=1) == 0
    assert abs(dropped.mean() - share) < 0.01
    assert (dropped & noisy).sum() > 0.8 * noisy.sum()  # mostly the noisy patch
    assert np.einsum("ij,ij->i", oriented[~dropped & ~noisy], normals[~dropped & ~noisy]).min() > 0.95


def test_normal_term_leaves_out_points_with_no_normal():
    gen = torch.Generator().manual_seed(1)
    grad = torch.randn(50, 3, generator=gen, requires_grad=True)
    normals = torch.nn.functional.normalize(torch.randn(50, 3, generator=gen), dim=1)
    normals[:20] = 0.0
    value = normal_term(grad, normals)
    torch.testing.assert_close(value, normal_term(grad[20:], normals[20:]))
    value.backward()
    assert float(grad.grad[:20].abs().max()) == 0.0 and float(grad.grad[20:].abs().max()) > 0.0


def test_propagation_makes_each_piece_consistent_and_labels_the_pieces():
    from siren_recon.engine.unoriented.normal_estimation import estimate_directions
    from siren_recon.engine.unoriented.orientation import propagate_signs

    unit, _ = sphere_cloud(2000, radius=1.0, seed=7)
    points = np.concatenate([unit * 0.5, unit * 0.3 + [2.0, 0.0, 0.0]])  # two spheres, far apart
    outward = np.concatenate([unit, unit])
    directions, _ = estimate_directions(points, 20)
    signs, pieces = propagate_signs(points, directions, 15)
    assert set(np.unique(signs)) <= {-1.0, 1.0}
    assert len(np.unique(pieces[:2000])) == 1 and len(np.unique(pieces[2000:])) == 1
    assert pieces[0] != pieces[2000]
    agreement = np.einsum("ij,ij->i", directions * signs[:, None], outward)
    for piece in (slice(0, 2000), slice(2000, None)):  # all outward or all inward, per piece
        assert np.abs(np.sign(agreement[piece]).mean()) == 1.0


def test_one_neighbour_query_serves_the_directions_and_the_sign_propagation():
    """The orientation reuses the directions' neighbour index: the same result as two queries."""
    from siren_recon.engine.analysis.cloud_index import CloudIndex
    from siren_recon.engine.unoriented.normal_estimation import estimate_directions
    from siren_recon.engine.unoriented.orientation import propagate_signs

    points, _ = sphere_cloud(1500, radius=0.7, seed=4)
    index = CloudIndex(points).neighbours(30)
    assert index.shape == (1500, 30) and np.all(index[:, 0] == np.arange(1500))
    shared = estimate_directions(points, 30, index)
    alone = estimate_directions(points, 30)
    np.testing.assert_array_equal(shared[0], alone[0])
    np.testing.assert_array_equal(shared[1], alone[1])
    for a, b in zip(propagate_signs(points, alone[0], 15, index), propagate_signs(points, alone[0], 15)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="at least 16 columns"):
        propagate_signs(points, alone[0], 15, index[:, :10])


@pytest.mark.slow
def test_unoriented_refinement_fits_detail_closer_than_digs_alone():
    """Two stages (DiGS, then oriented estimated normals) recover bumps DiGS alone rounds off."""

    def radius(d: np.ndarray) -> np.ndarray:
        azimuth, polar = np.arctan2(d[:, 1], d[:, 0]), np.arccos(np.clip(d[:, 2], -1, 1))
        return 0.6 + 0.08 * np.sin(4 * azimuth) * np.sin(4 * polar)

    rng = np.random.default_rng(5)
    directions = rng.normal(size=(4000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    points = directions * radius(directions)[:, None]
    errors = {}
    for share in (0.0, 0.5):
        config = small_config(train__iterations=300, refinement__share=share, mesh__resolution=64)
        result = reconstruct_points(points, None, config)
        assert result.mode == "unoriented"
        norm = np.linalg.norm(result.vertices, axis=1)
        errors[share] = float(np.mean(np.abs(norm - radius(result.vertices / norm[:, None]))))
    assert errors[0.5] < 0.5 * errors[0.0], errors  # measured 0.0015 vs 0.0116


def small_batch() -> Batch:
    gen = torch.Generator().manual_seed(3)
    surface = torch.nn.functional.normalize(torch.randn(200, 3, generator=gen), dim=1) * 0.6
    return Batch(
        surface,
        surface / 0.6,
        torch.rand(150, 3, generator=gen) * 2 - 1,
        surface[:60] + 0.02 * torch.randn(60, 3, generator=gen),
    )


@pytest.mark.parametrize(
    ("mode", "share"), [("oriented", 1.0), ("oriented", 0.3), ("unoriented", 1.0), ("unoriented", 0.3)]
)
def test_every_derivative_path_gives_the_same_loss_and_parameter_gradients(mode, share):
    """``train.derivatives`` autograd, forward, fused and auto (which mixes them within one step)
    agree, with the divergence (unoriented) or the eikonal (oriented) at every off-surface row and
    at a share of them (in float32: the bfloat16 backward has its own test)."""
    from siren_recon.engine.fitting.trainer import compute_loss

    batch = small_batch()
    results = {}
    for path in ("autograd", "forward", "fused", "auto"):
        config = small_config(
            train__derivatives=path,
            unoriented__divergence_share=share,
            oriented__eikonal_share=share,
            train__backward_precision="float32",
        )
        torch.manual_seed(0)
        model = Siren(config.model)
        sphere_init(model, 0.5, True, torch.Generator().manual_seed(1))
        terms = compute_loss(model, batch, config, mode, divergence_weight=100.0)
        grads = torch.autograd.grad(terms["total"], [p for p in model.parameters()], allow_unused=True)
        results[path] = ({k: float(v) for k, v in terms.items()}, grads)
    for path in ("forward", "fused", "auto"):
        assert results[path][0].keys() == results["autograd"][0].keys()
        for name, value in results["autograd"][0].items():
            assert results[path][0][name] == pytest.approx(value, rel=1e-4, abs=1e-5), (path, name)
        for a, b in zip(results["autograd"][1], results[path][1]):
            if a is not None:
                torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4 * float(a.abs().max()) + 1e-7)
    if mode == "unoriented":
        assert results["auto"][0]["divergence"] > 0


@pytest.mark.parametrize("path", ["autograd", "auto"])
def test_divergence_share_takes_the_divergence_at_the_first_box_and_near_rows(path):
    """At ``divergence_share`` q the term is the clamped mean over the first ceil(q B) box and
    ceil(q M) near points, the same rows whichever way the Laplacian is computed."""
    from siren_recon.engine.fitting.losses import divergence_term
    from siren_recon.engine.fitting.trainer import compute_loss

    batch = small_batch()
    config = small_config(train__derivatives=path, unoriented__divergence_share=0.3)
    torch.manual_seed(0)
    model = Siren(config.model)
    sphere_init(model, 0.5, True, torch.Generator().manual_seed(1))
    points = torch.cat([batch.surface, batch.box, batch.near]).requires_grad_(True)
    _, grad = sdf_and_gradient(model, points)
    full = divergence(grad, points, slice(200, None)).detach()  # 150 box rows, then 60 near rows
    chosen = torch.cat([full[:45], full[150:168]])  # ceil(0.3 * 150), ceil(0.3 * 60)
    low, high = config.unoriented.divergence_clamp_low, config.unoriented.divergence_clamp_high
    expected = 100.0 * float(divergence_term(chosen, low, high))
    assert expected != pytest.approx(100.0 * float(divergence_term(full, low, high)), rel=1e-3)  # 566 vs 569
    terms = compute_loss(model, batch, config, "unoriented", divergence_weight=100.0)
    assert float(terms["divergence"]) == pytest.approx(expected, rel=1e-4)


def test_sampled_rows_are_the_share_rounded_up_and_never_one_too_many():
    from siren_recon.engine.fitting.trainer import sampled_rows

    assert sampled_rows(3500, 1500, 0.1) == (350, 150)
    assert sampled_rows(100, 200, 0.07) == (7, 14)  # 0.07 * 100 is 7.000000000000001 in floats
    assert sampled_rows(10, 3, 0.001) == (1, 1)  # a share of a few rows is still a row
    assert sampled_rows(3500, 0, 1.0) == (3500, 0)


@pytest.mark.parametrize("share", [0.0, 1.5])
@pytest.mark.parametrize("key", ["unoriented.divergence_share", "oriented.eikonal_share"])
def test_a_sampling_share_outside_0_to_1_is_refused(key, share):
    with pytest.raises(ConfigError, match=f"{key} must be in"):
        small_config(**{key.replace(".", "__"): share})


@pytest.mark.parametrize("path", ["autograd", "forward"])
def test_eikonal_share_takes_the_gradient_at_the_surface_and_the_first_box_and_near_rows(path):
    """At ``eikonal_share`` q the eikonal term covers every surface row and the first ceil(q B)
    box and ceil(q M) near rows, the sample weighted as the B + M rows it stands for; the
    off-surface term still covers every box row."""
    from siren_recon.engine.fitting.losses import off_surface_term
    from siren_recon.engine.fitting.trainer import compute_loss

    batch = small_batch()  # 200 surface, 150 box, 60 near rows
    config = small_config(train__derivatives=path, oriented__eikonal_share=0.3)
    torch.manual_seed(0)
    model = Siren(config.model)
    sphere_init(model, 0.5, True, torch.Generator().manual_seed(1))
    f, grad = sdf_and_gradient(model, torch.cat([batch.surface, batch.box, batch.near]))
    deviation = (grad.detach().norm(dim=1) - 1).abs()
    sample = torch.cat([deviation[200:245], deviation[350:368]])  # ceil(0.3 * 150), ceil(0.3 * 60)
    weights = config.oriented
    expected = weights.eikonal * float((deviation[:200].sum() + sample.mean() * 210) / 410)
    assert expected != pytest.approx(weights.eikonal * float(deviation.mean()), rel=1e-3)
    terms = compute_loss(model, batch, config, "oriented")
    assert float(terms["eikonal"]) == pytest.approx(expected, rel=1e-4)
    off = weights.off_surface * float(off_surface_term(f[200:350].detach(), weights.off_surface_alpha))
    assert float(terms["off_surface"]) == pytest.approx(off, rel=1e-4)


@pytest.mark.slow
def test_digs_stage_fits_a_sphere_at_the_full_network_width():
    """The DiGS stage's own learning rate keeps a 128 x 3 network on the sphere.

    At the refinement's rate (5e-4) this fit came out with the surface pulled apart around the
    cloud (mean radial error 0.083); at ``unoriented.learning_rate`` (1e-4) it fits (0.003).
    """
    points, _ = sphere_cloud(3000)
    default_rate = ReconstructionConfig().unoriented.learning_rate
    config = small_config(
        train__iterations=300,
        refinement__share=0.0,
        model__hidden_features=128,
        model__hidden_layers=3,
        unoriented__learning_rate=default_rate,
    )
    result = reconstruct_points(points, None, config)
    error = np.abs(np.linalg.norm(result.vertices, axis=1) - 1.0)
    assert error.mean() < 0.01, error.mean()


def test_sign_prior_holds_the_digs_sign_far_from_the_cloud_and_nothing_near_it():
    from siren_recon.engine.unoriented.sign_prior import SignPrior, sign_prior_term

    points, _ = sphere_cloud(3000, 0.6, seed=4)
    prior = SignPrior.build(lambda x: x.norm(dim=1) - 0.6, points, 0.1, torch.device("cpu"), resolution=32)
    q = torch.tensor([[0.0, 0.0, 0.0], [0.95, 0.95, 0.95], [0.6, 0.0, 0.0], [0.0, 0.0, 0.4]])
    assert prior.lookup(q).tolist() == [-1.0, 1.0, 0.0, -1.0]
    # the wrong sign where the prior has one is penalised, by how far it is on the wrong side
    assert float(sign_prior_term(torch.tensor([0.3, -0.2, 5.0, -0.1]), prior.lookup(q))) == pytest.approx(
        (0.3 + 0.2) / 4
    )


def test_each_unoriented_stage_trains_at_its_own_rate_and_not_the_oriented_fits():
    """Without normals the DiGS stage runs at ``unoriented.learning_rate`` and the refinement at
    ``refinement.learning_rate``: the oriented fit's ``train.learning_rate`` changes nothing."""
    points, _ = sphere_cloud(800, radius=1.0)

    def mesh(**overrides: object) -> np.ndarray:
        config = small_config(train__iterations=40, mesh__resolution=24, mesh__trim="off", **overrides)
        return reconstruct_points(points, None, config).vertices

    base = mesh()
    np.testing.assert_array_equal(mesh(train__learning_rate=3e-3), base)
    for key in ("unoriented__learning_rate", "refinement__learning_rate"):
        changed = mesh(**{key: 3e-3})
        assert not np.array_equal(changed, base), key
