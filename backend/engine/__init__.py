"""The reconstruction engine: point cloud in, signed distance field and mesh out.

It knows nothing of ZeroMQ or Blender. The front door is :func:`siren_recon.engine.pipeline.reconstruct_points`;
settings are the dataclasses of :mod:`siren_recon.engine.config`.
"""
