"""One neighbour index per cloud (engine/analysis/cloud_index.py): the same answers as a tree of its own,
and a working set for clouds over the limit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from siren_recon.engine.analysis.cloud_index import CloudIndex, even_subsample, working_set
from siren_recon.engine.analysis.colours import transfer_colours
from siren_recon.engine.analysis.noise_level import estimate_noise
from siren_recon.engine.pipeline import reconstruct_points
from siren_recon.engine.unoriented.clearance import Clearance
from siren_recon.engine.unoriented.normal_estimation import estimate_directions
from siren_recon.engine.unoriented.sign_prior import SignPrior

from .shapes import small_config, sphere_cloud


@pytest.fixture(scope="module")
def cloud() -> np.ndarray:
    points, _ = sphere_cloud(4000, 0.7, seed=4)
    return points + np.random.default_rng(1).normal(scale=0.003, size=points.shape)


def test_neighbours_are_those_of_a_tree_of_their_own(cloud):
    _, expected = cKDTree(cloud).query(cloud, k=30)
    assert np.array_equal(CloudIndex(cloud).neighbours(30), expected)
    assert np.array_equal(CloudIndex(cloud, chunk=97).neighbours(30), expected)


def test_query_spacing_and_distance_are_those_of_a_tree_of_their_own(cloud):
    tree, index = cKDTree(cloud), CloudIndex(cloud, chunk=333)
    probes = np.random.default_rng(2).uniform(-1, 1, (1000, 3))
    for k in (1, 4):
        for got, want in zip(index.query(probes, k=k), tree.query(probes, k=k)):
            assert np.array_equal(got, want)
    assert index.spacing == float(np.median(tree.query(cloud, k=2)[0][:, 1]))
    capped = np.minimum(tree.query(probes, k=1, distance_upper_bound=0.2)[0], 0.2)
    assert np.array_equal(index.distance(probes, 0.2), capped)


def sphere(x: torch.Tensor) -> torch.Tensor:
    """The signed distance of the fixture's sphere."""
    return x.norm(dim=1) - 0.7


def test_every_consumer_answers_the_same_from_the_shared_index(cloud):
    index = CloudIndex(cloud)
    assert estimate_noise(index, 3) == estimate_noise(cloud, 3)
    shared_prior = SignPrior.build(sphere, index, 0.1, torch.device("cpu"), resolution=16)
    alone_prior = SignPrior.build(sphere, cloud, 0.1, torch.device("cpu"), resolution=16)
    assert torch.equal(shared_prior.grid, alone_prior.grid)
    shared = Clearance.build(index, 4.0, 0.3, torch.device("cpu"), resolution=24)
    alone = Clearance.build(cloud, 4.0, 0.3, torch.device("cpu"), resolution=24)
    assert shared.margin == alone.margin and torch.equal(shared.distance, alone.distance)
    for got, want in zip(estimate_directions(cloud, 30, index.neighbours(30)), estimate_directions(cloud, 30)):
        assert np.array_equal(got, want)


def test_a_cloud_within_the_limit_is_indexed_whole(cloud):
    index = CloudIndex.build(cloud, seed=0, limit=len(cloud))
    assert not index.subsampled and np.array_equal(index.points, cloud) and working_set(10, 0, 10) is None


def test_a_cloud_over_the_limit_is_indexed_through_an_even_seeded_subsample(cloud):
    index = CloudIndex.build(cloud, seed=5, limit=1000)
    assert index.subsampled and len(index) == 1000 and index.source_count == len(cloud)
    assert np.all(np.diff(index.rows) > 0)
    assert np.array_equal(index.points, cloud[index.rows])
    assert np.array_equal(index.take(np.arange(len(cloud))), index.rows)
    assert np.array_equal(CloudIndex.build(cloud, seed=5, limit=1000).rows, index.rows)
    assert not np.array_equal(CloudIndex.build(cloud, seed=6, limit=1000).rows, index.rows)
    # even: each octant keeps about its share
    share = np.bincount((index.points > 0) @ np.array([1, 2, 4]), minlength=8) / 1000
    assert np.all(np.abs(share - 1 / 8) < 0.04)
    assert np.array_equal(even_subsample(7, 10, 0), np.arange(7))


def test_colours_come_from_the_index_and_its_working_set(cloud):
    colours = (cloud - cloud.min(axis=0)) / np.ptp(cloud, axis=0)  # a colour that follows position
    vertices = cloud[::7] * 1.01
    whole = transfer_colours(CloudIndex(cloud), colours, vertices)
    assert np.array_equal(whole, transfer_colours(cloud, colours, vertices))
    subsampled = transfer_colours(CloudIndex.build(cloud, seed=0, limit=1500), colours, vertices)
    error = np.abs(subsampled - whole)  # within about a spacing of the 1,500 points (0.045 of the colour)
    assert subsampled.shape == whole.shape and np.median(error) < 0.02 and error.max() < 0.1


def test_an_unoriented_cloud_over_the_limit_trains_its_refinement_on_the_working_set(monkeypatch):
    """20k points with the limit at 6k: the refinement's whole-cloud steps see 6k points, and the
    surface is still the sphere."""
    points, _ = sphere_cloud(20_000, 1.0, seed=8)
    config = small_config(train__iterations=200, mesh__resolution=32, mode="unoriented")
    seen: list[int] = []
    original = CloudIndex.neighbours

    def spy(self, count):
        seen.append(len(self))
        return original(self, count)

    monkeypatch.setattr(CloudIndex, "neighbours", spy)
    result = reconstruct_points(points, None, config, working_points=6000)
    assert seen == [6000]
    radii = np.linalg.norm(result.vertices, axis=1)
    assert len(result.faces) > 0 and np.median(np.abs(radii - 1.0)) < 0.05
