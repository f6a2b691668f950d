"""A large cloud fitted as overlapping tiles, one field each, blended into one seamless field.

One network resolves detail down to a fixed share of what it spans; a building or a street spans
hundreds of times its smallest parts. ``tiles.size`` cuts the cloud's box into tiles of about that
edge (:mod:`.plan`), or, by default, ``tiles.voxels`` voxels of ``mesh.voxel_size`` when the box is
longer than that; each trains its own field on its points and those of a band around it, and
the fields are blended across the bands with weights that sum to one (:mod:`.blend`), their signs
made to agree where no normals fixed them; the blend is meshed on one lattice over the whole box
(:mod:`.tiled_field`), so the surface has no seams and border vertices are shared, in blocks that
can be meshed apart (:mod:`.block_meshing`). Where the tiles train and the blocks are meshed is up
to a tile runner (:mod:`.runs`): in turn in this process, or side by side.
"""
