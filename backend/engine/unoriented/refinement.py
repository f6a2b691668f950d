"""The second stage of unoriented mode: a fresh SIREN fitted to normals the DiGS field signed.

The DiGS fit is smooth and has one consistent inside, but rounds off detail. The refinement
estimates each point's normal direction from its neighbours, signs the directions (consistently
along the neighbour graph, the side chosen by the DiGS field's gradient; :func:`orient_directions`)
and fits a fresh network to them with the oriented loss, held to the DiGS field's sign far from
the cloud (:mod:`.sign_prior`), kept from zero crossings far from every point (:mod:`.clearance`),
and on a noisy cloud (:func:`noise_factor` above 1) with its normal weight raised, its learning
rate lowered and its clearance margin narrowed. A fresh network, not the DiGS one: continuing the
geometric-init network fitted detail several times worse (see docs/experiments.md).
"""

from __future__ import annotations

import numpy as np
import torch

from ..analysis.cloud_index import CloudIndex, as_index
from ..analysis.noise_level import noise_factor
from ..config.reconstruction import NormalEstimationConfig, ReconstructionConfig
from ..field.derivatives import sdf_and_gradient
from ..field.model import FoldedSiren
from ..field.sdf_field import SdfField
from ..fitting.regularisers import Regulariser
from ..fitting.stage import Stage
from .clearance import Clearance, ClearanceRegulariser
from .normal_estimation import estimate_directions
from .orientation import propagate_signs
from .sign_prior import SignPrior, SignPriorRegulariser

ORIENT_CHUNK = 65_536
"""Points whose gradients are evaluated at once when orienting the estimated normals."""


def refinement_stage(
    digs: SdfField, cloud: CloudIndex, noise: float, config: ReconstructionConfig, device: torch.device,
    iterations: int, offset: int,
) -> Stage:
    """The refinement's stage, built from the DiGS stage's field and the cloud's noise level ``noise``
    (the ratio :func:`~siren_recon.engine.analysis.noise_level.estimate_noise` measures).

    Everything here looks at the points of ``cloud``, the cloud's index (its working set when the
    cloud is larger than ``cloud_index.WORKING_POINTS``), and the stage trains on those points."""
    settings = config.refinement
    unit = cloud.points
    oriented = orient_directions(digs.model, cloud, settings.normals, device)
    factor = noise_factor(noise, config.noise.free_ratio)
    regularisers: list[Regulariser] = []
    if settings.sign_prior > 0:
        prior = SignPrior.build(FoldedSiren(digs.model), cloud, settings.prior_distance, device)
        regularisers.append(SignPriorRegulariser(prior, settings.sign_prior))
    if settings.clearance > 0:
        spacings = settings.noisy_clearance_spacings if factor > 1 else settings.clearance_spacings
        clearance = Clearance.build(cloud, spacings, settings.prior_distance, device)
        regularisers.append(ClearanceRegulariser(clearance, settings.clearance, settings.clearance_points))
    return Stage(index=1, loss_mode="oriented", iterations=iterations, normals=oriented, init="siren",
                 learning_rate=settings.learning_rate / factor, offset=offset,
                 normal_weight=config.oriented.normal * factor,
                 regularisers=regularisers, points=unit if cloud.subsampled else None, spacing=cloud.spacing)


def orient_directions(model: torch.nn.Module, cloud: np.ndarray | CloudIndex, config: NormalEstimationConfig,
                      device: torch.device) -> np.ndarray:
    """Normal directions of the points of ``cloud`` (unit points, or their index) estimated from
    their neighbours, signed so that ``grad f`` agrees with them.

    With ``orientation="propagate"`` the gradient only votes, once per connected piece of the
    cloud, on signs made consistent along the neighbour graph; with ``"gradient"`` it decides
    each point's sign alone. A zero normal, no normal term there, goes to the points whose
    gradient contradicts their propagated sign (``drop_disputed``) and to the share
    ``rough_share`` of the points with the roughest neighbourhoods.
    """
    propagate = config.orientation == "propagate"
    shared = as_index(cloud)
    unit = shared.points
    index = shared.neighbours(
        max(config.neighbours, config.orientation_neighbours + 1 if propagate else 0)
    )
    directions, variation = estimate_directions(unit, config.neighbours, index, config.scales)
    grads = []
    for start in range(0, len(unit), ORIENT_CHUNK):
        x = torch.as_tensor(unit[start : start + ORIENT_CHUNK], dtype=torch.float32, device=device)
        _, grad = sdf_and_gradient(model, x, create_graph=False)
        grads.append(grad.detach().cpu().numpy())
    votes = np.einsum("ij,ij->i", np.concatenate(grads), directions)
    if propagate:
        sign, pieces = propagate_signs(unit, directions, config.orientation_neighbours, index)
        sign = sign * np.where(np.bincount(pieces, weights=sign * votes) < 0, -1.0, 1.0)[pieces]
        if config.drop_disputed:
            sign[sign * votes < 0] = 0.0
    else:
        sign = np.where(votes < 0, -1.0, 1.0)
    if config.rough_share > 0:
        sign[variation > np.quantile(variation, 1.0 - config.rough_share)] = 0.0
    return (directions * sign[:, None]).astype(np.float32)
