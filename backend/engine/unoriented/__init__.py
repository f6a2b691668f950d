"""Clouds without normals: normal directions and their orientation, and the refinement stage with
its regularisers (sign prior, clearance)."""
