"""How well siren-recon reconstructs, measured: mesh metrics, small-detail metrics, virtual scans
of meshes and terrain, and the harness that starts a backend for the benchmarks.

It ships with the repository, not with the installed product: ``scripts/`` and ``tests/`` import
it from the checkout.
"""
