"""Fitting a field to a cloud: the points of each step, the loss terms, the regularisers and the training loop."""
