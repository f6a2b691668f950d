"""Reading a point cloud file by its suffix: the one entry point every command uses."""

from __future__ import annotations

import os

from ..engine.errors import InputError
from .cloud import Cloud, check_exists, check_format
from .open3d_clouds import OPEN3D_FORMATS, read_open3d_cloud
from .ply import PLY_FORMATS, read_ply
from .text_clouds import TEXT_CLOUD_FORMATS, read_text_cloud

LAS_SUFFIXES = (".las", ".laz")
E57_SUFFIXES = (".e57",)
CLOUD_FORMATS = PLY_FORMATS + TEXT_CLOUD_FORMATS + OPEN3D_FORMATS + LAS_SUFFIXES + E57_SUFFIXES
"""Every suffix :func:`read_cloud` reads."""


def read_cloud(path: str | os.PathLike) -> Cloud:
    """The cloud in ``path``, read by its suffix; :class:`InputError` naming the file for anything wrong.

    PLY and the text formats are read with NumPy alone. LAS/LAZ and E57 readers are imported
    only for their files, so the other formats do not pay for loading laspy or libE57, and an
    install without the ``formats`` extra reads every other format (a missing reader is an
    :class:`InputError` that says what to install); pcd and pts need the ``open3d`` extra.
    """
    source = check_format(path, CLOUD_FORMATS, "point cloud")
    check_exists(source)
    suffix = source.suffix.lower()
    if suffix in PLY_FORMATS:
        return read_ply(source)
    if suffix in TEXT_CLOUD_FORMATS:
        return read_text_cloud(source)
    try:
        if suffix in LAS_SUFFIXES:
            from .las import read_las

            return read_las(source)
        if suffix in E57_SUFFIXES:
            from .e57 import read_e57

            return read_e57(source)
    except ImportError as exc:
        raise InputError(
            f"reading {suffix} files needs the scanner-format libraries, and {exc.name or exc} is not installed: "
            "pip install 'siren-recon[formats]'", "format_unavailable") from exc
    return read_open3d_cloud(source)
