"""The suite's short training cases whose surfaces are judged against the true shape.

Three short runs: an oriented sphere and an unoriented Spot (the recorded reference meshes of
``tests/test_reference_meshes.py``) and an unoriented torus (``tests/test_unoriented.py``). A run
of a few hundred Adam steps carries a change in the last bits of a sum (another thread count,
another SIMD path, another BLAS) into a visibly different mesh, so tests that must pass on any
machine judge these meshes by their distance to the true surface and their topology, not by
their distance to one recorded run. ``scripts/numerics_spread.py`` runs the same cases under
several numerics on one machine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .paths import DATA
from .shapes import small_config, sphere_cloud

CASE_SEEDS: dict[str, int] = {"sphere_oriented": 3, "spot_unoriented": 3, "torus": 0, "torus_digs": 0}
"""The training seed each case runs with in the tests."""
SPHERE_RADIUS, SPHERE_CENTRE = 1.5, np.array([0.5, -1.0, 2.0])
TORUS_MAJOR, TORUS_MINOR = 0.6, 0.25


def case_cloud(case: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The input points (and normals, for the oriented case)."""
    if case == "sphere_oriented":
        return sphere_cloud(1500, radius=SPHERE_RADIUS, centre=tuple(SPHERE_CENTRE), seed=7)
    if case.startswith("torus"):
        return torus_points(3000), None
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(str(DATA / "spot_sample.ply"))
    points = np.asarray(cloud.points)
    return points[np.random.default_rng(5).permutation(len(points))[:3000]].copy(), None


def case_overrides(case: str, seed: int, threads: int, compile_choice: str = "off") -> dict[str, object]:
    """The settings of one case, beyond ``small_config``'s. Trimming is off in the reference cases:
    runs this short leave sheets no point supports, which the automatic trim would cut
    (``tests/test_trimming.py`` covers it); the unoriented Spot keeps the roughest-normal drop on
    to cover it."""
    common: dict[str, object] = {"train__seed": seed, "train__threads": threads, "train__compile": compile_choice}
    if case.startswith("torus"):  # torus_digs: DiGS alone, no refinement
        return {"train__iterations": 500, "train__device": "cpu", **common,
                **({"refinement__share": 0.0} if case == "torus_digs" else {})}
    common.update(train__device="cpu", train__iterations=300, mesh__resolution=40, mesh__trim="off")
    if case == "spot_unoriented":
        common["refinement__normals__rough_share"] = 0.2
    return common


def case_mesh(
    case: str, seed: int | None = None, threads: int = 2, compile_choice: str = "off", **extra: object
) -> tuple[np.ndarray, np.ndarray]:
    """Train one case and return its mesh's vertices and faces (on ``threads`` threads; the run sets
    torch's count back after)."""
    from siren_recon.engine.pipeline import reconstruct_points

    points, normals = case_cloud(case)
    overrides = case_overrides(case, CASE_SEEDS[case] if seed is None else seed, threads, compile_choice)
    overrides.update(extra)
    result = reconstruct_points(points, normals, small_config(**overrides))
    return result.vertices, result.faces


def torus_points(count: int, major: float = TORUS_MAJOR, minor: float = TORUS_MINOR, seed: int = 0) -> np.ndarray:
    """Points on a torus around the z axis, uniform in its two angles."""
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, (2, count))
    ring = major + minor * np.cos(v)
    return np.stack([ring * np.cos(u), ring * np.sin(u), minor * np.sin(v)], axis=1)


def torus_distance(points: np.ndarray) -> np.ndarray:
    """Signed distance to the torus of :func:`torus_points` (negative inside the tube)."""
    return np.hypot(np.hypot(points[:, 0], points[:, 1]) - TORUS_MAJOR, points[:, 2]) - TORUS_MINOR


def sphere_distance(points: np.ndarray) -> np.ndarray:
    """Signed distance to the sphere of the oriented case."""
    return np.linalg.norm(points - SPHERE_CENTRE, axis=1) - SPHERE_RADIUS


def euler_characteristic(vertices: np.ndarray, faces: np.ndarray) -> int:
    """V - E + F of a triangle mesh (0 for a closed surface of genus one, 2 for a sphere)."""
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1), axis=0)
    return int(len(vertices) - len(edges) + len(faces))


def truth_samples(case: str, count: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Area-uniform points on the true surface, and the true surface's box diagonal."""
    if case == "sphere_oriented":
        directions = rng.normal(size=(count, 3))
        points = SPHERE_CENTRE + SPHERE_RADIUS * directions / np.linalg.norm(directions, axis=1, keepdims=True)
        return points, 2 * SPHERE_RADIUS * np.sqrt(3.0)
    if case.startswith("torus"):
        # the area element is proportional to (major + minor cos v): rejection sampling on v
        u, v, keep = rng.uniform(0, 2 * np.pi, (3, 3 * count))
        v = v[keep / (2 * np.pi) * (TORUS_MAJOR + TORUS_MINOR) <= TORUS_MAJOR + TORUS_MINOR * np.cos(v)][:count]
        u = u[:len(v)]
        ring = TORUS_MAJOR + TORUS_MINOR * np.cos(v)
        points = np.stack([ring * np.cos(u), ring * np.sin(u), TORUS_MINOR * np.sin(v)], axis=1)
        reach = TORUS_MAJOR + TORUS_MINOR
        return points, float(np.linalg.norm([2 * reach, 2 * reach, 2 * TORUS_MINOR]))
    truth = spot_truth()
    from evaluation.metrics import sample_surface

    points, _ = sample_surface(truth[0], truth[1], count, rng)
    return points, float(np.linalg.norm(np.ptp(truth[0], axis=0)))


def spot_truth() -> tuple[np.ndarray, np.ndarray]:
    """The bundled Spot mesh (public domain), vertices and faces."""
    import open3d as o3d

    mesh = o3d.io.read_triangle_mesh(str(DATA / "spot.obj"))
    return np.asarray(mesh.vertices), np.asarray(mesh.triangles)


def truth_chamfer(case: str, vertices: np.ndarray, faces: np.ndarray, samples: int = 50_000) -> float:
    """Chamfer-L1 between a case's mesh and its true surface, as a share of the truth's box
    diagonal: exact distances to the analytic sphere and torus, to Spot's triangles otherwise."""
    from evaluation.metrics import closest_on_mesh, sample_surface

    rng = np.random.default_rng(0)
    truth, diagonal = truth_samples(case, samples, rng)
    on_mesh, _ = sample_surface(vertices, faces, samples, rng)
    analytic: dict[str, Callable[[np.ndarray], np.ndarray]] = {"sphere": sphere_distance, "torus": torus_distance}
    if case.split("_")[0] in analytic:
        accuracy = np.abs(analytic[case.split("_")[0]](on_mesh))
    else:
        accuracy = closest_on_mesh(*spot_truth(), on_mesh)[0]
    completeness = closest_on_mesh(vertices, faces, truth)[0]
    return float((accuracy.mean() + completeness.mean()) / 2 / diagonal)


def score_mesh(case: str, vertices: np.ndarray, faces: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """How a case's mesh stands: its vertices' distance to a baseline run's (largest and 99th
    percentile, both ways, as shares of the baseline's box diagonal), its Chamfer to the truth
    and its Euler characteristic."""
    from scipy.spatial import cKDTree

    diagonal = float(np.linalg.norm(np.ptp(baseline, axis=0)))
    both = np.concatenate([cKDTree(baseline).query(vertices)[0], cKDTree(vertices).query(baseline)[0]]) / diagonal
    return {"max_to_baseline": float(both.max()), "p99_to_baseline": float(np.percentile(both, 99)),
            "chamfer": truth_chamfer(case, vertices, faces), "euler": euler_characteristic(vertices, faces)}


def supported_part(case: str, vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mesh as the engine's automatic trim leaves it for the case's points: the sheets a short
    run leaves where no point is are cut, the surface the points sample stays."""
    from siren_recon.engine.analysis.cloud_index import CloudIndex
    from siren_recon.engine.meshing.trimming import trim_mesh

    points, _ = case_cloud(case)
    kept_vertices, kept_faces, _ = trim_mesh(vertices, faces, CloudIndex(points), "auto", 0.0)
    return kept_vertices, kept_faces


def numerics_fingerprint() -> str:
    """A digest of the bits that this machine's torch gives for the kinds of arithmetic a training
    step does (matrix products at the small networks' shapes in both directions, sines, sums, an
    Adam update). Two machines with the same digest and torch version train the reference cases to
    the same bits; another BLAS code path, SIMD kernel or summation order changes it."""
    import hashlib

    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3000, 3, generator=generator) * 2 - 1
    layers = [torch.randn(3, 64, generator=generator), torch.randn(64, 64, generator=generator) / 8,
              torch.randn(64, 1, generator=generator) / 8]
    weights = [layer.clone().requires_grad_(True) for layer in layers]
    optimiser = torch.optim.Adam(weights, lr=1e-3)
    digest = hashlib.sha256()
    for _ in range(3):
        h = x
        for weight in weights[:-1]:
            h = torch.sin(30 * h @ weight)
        out = h @ weights[-1]
        loss = (out.abs().mean() + out.square().sum() / len(out)) * 1.5
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        for tensor in (out, loss, *weights):
            digest.update(tensor.detach().numpy().tobytes())
    return digest.hexdigest()[:16]
