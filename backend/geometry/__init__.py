"""Operations on meshes held as NumPy arrays (vertices, faces), free of torch: what the writers and
the renderer share."""
