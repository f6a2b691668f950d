"""Bad input is refused with an error that names the problem."""

from __future__ import annotations

import numpy as np
import pytest

from siren_recon.engine.errors import InputError
from siren_recon.engine.pipeline import reconstruct_points

from .shapes import small_config, sphere_cloud


@pytest.mark.parametrize(
    "points, code, words",
    [
        (np.zeros((0, 3)), "empty_cloud", "empty"),
        (np.random.default_rng(0).normal(size=(5, 3)), "too_few_points", "at least"),
        (np.zeros((100, 2)), "bad_shape", "shape"),
        (np.ones((100, 3)), "degenerate_cloud", "all points are equal"),
        (np.outer(np.linspace(0, 1, 100), [1.0, 2.0, 3.0]), "degenerate_cloud", "line"),
    ],
)
def test_bad_point_clouds_are_refused(points, code, words):
    with pytest.raises(InputError, match=words) as info:
        reconstruct_points(points, None, small_config(mode="oriented"))
    assert info.value.code == code


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_coordinates_are_refused(bad):
    points, normals = sphere_cloud(200)
    points[17, 1] = bad
    with pytest.raises(InputError, match="NaN or infinite.*index 17") as info:
        reconstruct_points(points, normals, small_config())
    assert info.value.code == "non_finite_points"


def test_normals_of_the_wrong_count_are_refused():
    points, normals = sphere_cloud(200)
    with pytest.raises(InputError, match="199 normals for 200 points") as info:
        reconstruct_points(points, normals[:-1], small_config())
    assert info.value.code == "normals_count_mismatch"


def test_zero_length_normals_are_refused_not_dropped():
    points, normals = sphere_cloud(200)
    normals[[3, 9]] = 0.0
    with pytest.raises(InputError, match=r"2 normal\(s\) have zero length") as info:
        reconstruct_points(points, normals, small_config())
    assert info.value.code == "zero_normals"


def test_nan_normals_are_refused():
    points, normals = sphere_cloud(200)
    normals[5, 0] = np.nan
    with pytest.raises(InputError, match=r"normal\(s\) have NaN") as info:
        reconstruct_points(points, normals, small_config())
    assert info.value.code == "non_finite_normals"


def test_oriented_mode_without_normals_is_refused():
    points, _ = sphere_cloud(200)
    with pytest.raises(InputError, match="needs normals"):
        reconstruct_points(points, None, small_config(mode="oriented"))
