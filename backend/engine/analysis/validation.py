"""Checks on a point cloud before anything is trained on it.

Every rejection raises :class:`InputError` with a ``code`` and a message that names the problem,
so that the CLI, the backend and the add-on can show it as it is.
"""

from __future__ import annotations

import numpy as np

from ...protocol.messages import MIN_POINTS
from ..errors import InputError


def validate_points(points: object) -> np.ndarray:
    """Return ``points`` as float64 (N, 3), or raise :class:`InputError` naming what is wrong."""
    array = np.asarray(points)
    if array.ndim != 2 or array.shape[1] != 3:
        raise InputError(f"points must have shape (N, 3), got {array.shape}", "bad_shape")
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"points must be numeric, got dtype {array.dtype}", "bad_dtype")
    if array.shape[0] == 0:
        raise InputError("the point cloud is empty", "empty_cloud")
    if array.shape[0] < MIN_POINTS:
        raise InputError(
            f"the point cloud has {array.shape[0]} points; at least {MIN_POINTS} are needed",
            "too_few_points",
        )
    array = _finite(array, "point(s) have NaN or infinite coordinates", "non_finite_points")
    extent = array.max(axis=0) - array.min(axis=0)
    longest = float(extent.max())
    if longest <= 0.0:
        raise InputError("all points are equal: the cloud has no extent", "degenerate_cloud")
    centred = array - array.mean(axis=0)
    singular = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], compute_uv=False)
    if singular[1] <= 1e-6 * singular[0]:
        raise InputError("the points lie on a line: no surface can be fitted", "degenerate_cloud")
    return array


def _finite(array: np.ndarray, problem: str, code: str) -> np.ndarray:
    """``array`` as float64, or :class:`InputError` counting its non-finite rows."""
    array = array.astype(np.float64)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise InputError(f"{int(bad.sum())} {problem} (first at index {int(np.flatnonzero(bad)[0])})", code)
    return array


def validate_normals(normals: object, count: int) -> np.ndarray:
    """Return unit normals as float64 (count, 3), or raise :class:`InputError`.

    Zero-length or non-finite normals are refused, never silently dropped: a caller that has
    partly bad normals should either fix them or reconstruct without normals.
    """
    array = np.asarray(normals)
    if array.ndim != 2 or array.shape[1] != 3:
        raise InputError(f"normals must have shape (N, 3), got {array.shape}", "bad_normals")
    if array.shape[0] != count:
        raise InputError(
            f"there are {array.shape[0]} normals for {count} points; the counts must match",
            "normals_count_mismatch",
        )
    array = _finite(array, "normal(s) have NaN or infinite components", "non_finite_normals")
    length = np.linalg.norm(array, axis=1)
    zero = length < 1e-12
    if zero.any():
        raise InputError(
            f"{int(zero.sum())} normal(s) have zero length (first at index {int(np.flatnonzero(zero)[0])})",
            "zero_normals",
        )
    return array / length[:, None]
