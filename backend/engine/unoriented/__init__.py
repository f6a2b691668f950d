"""Clouds without normals: normal directions and their orientation, the noise level, and the
refinement stage with its regularisers (sign prior, clearance)."""
