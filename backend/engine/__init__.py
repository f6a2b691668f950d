"""The reconstruction engine: point cloud in, signed distance field and mesh out.

It knows nothing of ZeroMQ or Blender. The front door is
:func:`siren_recon.engine.pipeline.reconstruct_points`; settings are the dataclasses of
:mod:`siren_recon.engine.config`. The sub-packages by role:

* ``config``: the settings' typed sections, their bounds and their catalogue;
* ``analysis``: the input cloud's checks, normalization, neighbour index, noise level, colours;
* ``field``: the SIREN, its initialisations, its derivatives, the trained field, checkpoints;
* ``fitting``: the points of each step, the loss terms, the regularisers, the training loop;
* ``unoriented``: normal directions, their orientation, and the refinement
  stage with its regularisers (sign prior, clearance);
* ``meshing``: dense and narrow-band extraction, cleanup and trimming.
"""
