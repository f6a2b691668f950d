"""Files in and out: point clouds read by their suffix, meshes written by theirs.

The engine knows nothing of file formats; the commands read a cloud here
(:func:`~siren_recon.io.reading.read_cloud`), hand its arrays to the engine, and write the mesh
here (:func:`~siren_recon.io.meshes.write_mesh`). One module per format family:

* ``ply``, ``text_clouds``: PLY and xyz/xyzn/xyzrgb, read with NumPy alone;
* ``open3d_clouds``: pcd and pts, through the optional Open3D;
* ``las``: LAS and LAZ (airborne and terrestrial LiDAR), through laspy and its lazrs backend;
* ``e57``: E57 (terrestrial scanners' exchange format), through pye57, every scan in one frame;
* ``meshes``, ``ply_meshes``, ``text_meshes``: mesh files, with vertex colours where the format has them.
"""

from .cloud import Cloud
from .meshes import MESH_FORMATS, write_mesh
from .reading import CLOUD_FORMATS, read_cloud

__all__ = ["CLOUD_FORMATS", "MESH_FORMATS", "Cloud", "read_cloud", "write_mesh"]
