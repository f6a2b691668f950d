"""Geometric initialisation of a SIREN: start training from the SDF of a sphere.

DiGS (Ben-Shabat et al. 2022) showed that a SIREN whose zero level set starts as a sphere
around the object trains to a clean surface far more reliably than one started from the
paper's high-frequency initialisation. The construction here is our own:

* the first layer is put in the linear regime of the sine, ``sin(z) ~ z``: its weights form an
  exactly isotropic map ``B`` (all singular values equal) of small gain ``sigma`` per unit, so
  ``h = B x`` with ``B^T B = n sigma^2 I``;
* hidden layers pass ``h`` on unchanged in the same regime (scaled identity);
* the last hidden layer adds a phase of ``pi/2``: ``sin(h + pi/2) = cos(h) ~ 1 - h^2 / 2``;
* the output layer sums those with weight ``-a`` and bias ``c``, giving
  ``f(x) ~ a n sigma^2 / 2 |x|^2 - a n + c``; ``a`` and ``c`` are chosen so that
  ``f(x) ~ (|x|^2 - r^2) / (2 r)``: negative inside, zero on the sphere of radius ``r`` and of
  unit slope there.

``mfgi`` (multi-frequency geometric initialisation) keeps a share of the first layer's units at
the paper's high-frequency initialisation, so fine detail can be learned early, but weights
their outgoing connections down to almost nothing, so the starting field is still the sphere.
"""

from __future__ import annotations

import math

import torch

from .model import Siren

LOW_GAIN = 0.1
"""Per-unit gain ``sigma`` of the first layer in the linear regime (|z| stays well below 1)."""
HIGH_FREQUENCY_SHARE = 0.25
"""Share of first-layer units that ``mfgi`` keeps at the paper's high-frequency initialisation."""
HIGH_FREQUENCY_DAMPING = 1e-3
"""Factor on the outgoing weights of those units, relative to the paper's hidden-layer bound."""


@torch.no_grad()
def sphere_init(model: Siren, radius: float, multi_frequency: bool, generator: torch.Generator | None = None) -> None:
    """Re-initialise ``model`` in place so that ``f(x) ~ (|x|^2 - radius^2) / (2 radius)``."""
    layers = model.sine_layers
    omega = layers[0].omega_0
    width = layers[0].linear.out_features
    high = torch.zeros(width, dtype=torch.bool)
    if multi_frequency and width > 3:
        count = min(width - 3, max(1, int(round(HIGH_FREQUENCY_SHARE * width))))
        high[torch.randperm(width, generator=generator)[:count]] = True
    low_count = int((~high).sum())

    first = layers[0].linear
    u, _, vh = torch.linalg.svd(torch.randn(low_count, 3, generator=generator), full_matrices=False)
    weight = torch.zeros(width, 3)
    weight[~high] = (u @ vh) * (math.sqrt(low_count) * LOW_GAIN) / omega
    bias = torch.zeros(width)
    if high.any():
        n_high = int(high.sum())
        weight[high] = (torch.rand(n_high, 3, generator=generator) * 2 - 1) / 3.0
        bias[high] = (torch.rand(n_high, generator=generator) * 2 - 1) / math.sqrt(3.0)
    first.weight.copy_(weight)
    first.bias.copy_(bias)

    for index, layer in enumerate(layers[1:], start=1):
        weight = torch.eye(width) / omega
        if index == 1 and high.any():
            bound = math.sqrt(6.0 / width) / omega * HIGH_FREQUENCY_DAMPING
            weight[:, high] = (torch.rand(width, int(high.sum()), generator=generator) * 2 - 1) * bound
        layer.linear.weight.copy_(weight)
        layer.linear.bias.zero_()
    layers[-1].linear.bias.add_(math.pi / 2.0 / omega)

    # Every unit of the last hidden layer outputs cos(h) ~ 1 at the centre; when the first layer
    # is also the last, the high-frequency units are cut from the output instead.
    a = 1.0 / (radius * low_count * LOW_GAIN**2)
    out_weight = torch.full((1, width), -a)
    summed = width
    if len(layers) == 1 and high.any():
        out_weight[:, high] = 0.0
        summed = low_count
    model.output.weight.copy_(out_weight)
    model.output.bias.fill_(a * summed - radius / 2.0)
