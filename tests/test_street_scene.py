"""The procedural street scene is well formed, its survey lies on it, and the recall metric sees missing features."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics import closest_on_mesh
from evaluation.street import (
    CHIMNEY,
    GROUND,
    PARAPET,
    UTM_OFFSET,
    seen_from_above,
    small_feature_recall,
    street_scene,
    survey,
)


@pytest.fixture(scope="module")
def scene():
    return street_scene(seed=3)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def test_the_same_seed_gives_the_same_scene_and_another_seed_another(scene):
    again = street_scene(seed=3)
    assert np.array_equal(scene.vertices, again.vertices) and np.array_equal(scene.faces, again.faces)
    assert not np.array_equal(scene.vertices, street_scene(seed=4).vertices)


def test_every_box_is_closed_and_outward(scene):
    boxes = np.unique(scene.parts[scene.parts >= 0])
    assert len(boxes) >= 2 * 6 * 2  # a house and a chimney per plot at the least
    for part in boxes:
        faces = scene.faces[scene.parts == part]
        edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        _, uses = np.unique(edges, axis=0, return_counts=True)
        assert (uses == 2).all(), f"box {part} is not closed"
        assert signed_volume(scene.vertices, faces) > 0, f"box {part} faces inwards"


def test_the_scene_has_chimneys_on_every_roof_and_some_parapets(scene):
    assert (scene.labels == GROUND).sum() == 2
    assert len(np.unique(scene.parts[scene.labels == CHIMNEY])) == 12
    assert (scene.labels == PARAPET).any()
    assert scene.small_feature.any() and not scene.small_feature[scene.labels == GROUND].any()


def test_the_survey_lies_on_the_seen_surface_at_the_offset(scene):
    count, noise = 3_000, 0.02
    points, truth = survey(scene, count, noise=noise, seed=1)
    assert points.shape == (count, 3) and points.dtype == np.float64
    assert np.allclose(truth.vertices - scene.vertices, UTM_OFFSET)
    local = points - np.array(UTM_OFFSET)
    assert np.all(local.min(axis=0) > scene.vertices.min(axis=0) - 1.0)
    assert np.all(local.max(axis=0) < scene.vertices.max(axis=0) + 1.0)
    seen = seen_from_above(scene.vertices, scene.faces)
    distances, _, _ = closest_on_mesh(scene.vertices, scene.faces[seen], local)
    assert distances.max() <= noise * 5
    assert distances.mean() > noise * 0.3  # the noise is there


def test_recall_is_full_for_the_truth_and_low_without_the_features(scene):
    features = scene.small_feature
    assert small_feature_recall(scene.vertices, scene.faces, features, scene.vertices, scene.faces, 0.15) == 1.0
    bare = scene.without((CHIMNEY, PARAPET))
    assert small_feature_recall(scene.vertices, scene.faces, features, bare.vertices, bare.faces, 0.15) < 0.5
    chimneys = features & (scene.labels == CHIMNEY)
    no_chimneys = scene.without((CHIMNEY,))
    assert small_feature_recall(scene.vertices, scene.faces, chimneys, no_chimneys.vertices, no_chimneys.faces,
                                0.15) < 0.5
