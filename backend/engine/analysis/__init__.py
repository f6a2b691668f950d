"""The input cloud, analysed before fitting: its checks, its normalization into the unit box, its
neighbour index and working subsample, its noise level, and the colours a mesh takes from it."""
