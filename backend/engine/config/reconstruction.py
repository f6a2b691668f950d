"""Typed configuration of a reconstruction.

Every default lives here and nowhere else. The dataclasses nest into one
:class:`ReconstructionConfig`; :func:`apply_overrides` sets fields from flat dotted keys
(``"train.iterations"``), which is how the CLI and the wire protocol change them.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from ..errors import ConfigError
from .bounds import Bound, above, at_least, between

Mode = Literal["auto", "oriented", "unoriented"]
"""Reconstruction modes (``ReconstructionConfig.mode``)."""
Orientation = Literal["propagate", "gradient"]
"""Ways the unoriented refinement signs its estimated normal directions."""
Init = Literal["auto", "siren", "sphere", "mfgi"]
DivergenceShape = Literal["linear", "quintic", "step"]
Derivatives = Literal["auto", "autograd", "forward", "fused"]
BackwardPrecision = Literal["auto", "float32", "bfloat16"]
CompileChoice = Literal["auto", "on", "off"]
TrimChoice = Literal["auto", "off", "distance"]
MatmulPrecision = Literal["auto", "float32", "tf32"]
AdamKernel = Literal["auto", "for-loop", "foreach", "fused"]
PreviewThread = Literal["auto", "on", "off"]
StopRule = Literal["converged", "iterations"]

ORIENTATIONS: tuple[str, ...] = get_args(Orientation)
MODES: tuple[str, ...] = get_args(Mode)
INITS: tuple[str, ...] = get_args(Init)
DIVERGENCE_SHAPES: tuple[str, ...] = get_args(DivergenceShape)
DERIVATIVES: tuple[str, ...] = get_args(Derivatives)
BACKWARD_PRECISIONS: tuple[str, ...] = get_args(BackwardPrecision)
COMPILE_CHOICES: tuple[str, ...] = get_args(CompileChoice)
MATMUL_PRECISIONS: tuple[str, ...] = get_args(MatmulPrecision)
ADAM_KERNELS: tuple[str, ...] = get_args(AdamKernel)
PREVIEW_THREADS: tuple[str, ...] = get_args(PreviewThread)


@dataclass
class ModelConfig:
    """Shape of the SIREN network."""

    hidden_features: int = 128
    """Width of every hidden sine layer, >= 1. The paper uses 256; 128 scored the same Chamfer on
    Spot in 60% of the time (see docs/experiments.md)."""
    hidden_layers: int = 3
    """Number of hidden sine layers after the first one (the paper's SDF net uses 3)."""
    omega_0: float = 30.0
    """Frequency factor of the sine layers, ``sin(omega_0 * (W x + b))``."""
    init: Init = "auto"
    """``siren`` (the paper's), ``sphere`` or ``mfgi`` (see geometric_init); ``auto`` picks
    ``siren`` for oriented input and ``mfgi`` for unoriented input."""
    init_radius: float = 0.5
    """Radius of the starting sphere of the geometric initialisations, in unit coordinates."""


@dataclass
class SamplingConfig:
    """How many points each training step draws, and where.

    See :mod:`siren_recon.engine.fitting.sampling` for why the off-surface points are split between the
    padded box and a band around the surface.
    """

    surface_points: int = 5000
    """On-surface points drawn from the cloud each step."""
    box_points: int = 3500
    """Off-surface points uniform in the padded box ``[-1, 1]^3`` each step."""
    near_points: int = 1500
    """Points jittered off the cloud each step (eikonal only, see sampling)."""
    near_sigma: float = 0.02
    """Standard deviation of the jitter of the near points, in normalised units."""


@dataclass
class OrientedLossConfig:
    """The SIREN loss (Sitzmann et al. 2020, eq. 6); weights are the paper code's defaults."""

    surface: float = 3e3
    """Weight of ``|f|`` on the surface points."""
    normal: float = 1e2
    """Weight of ``1 - cos(grad f, n)`` on the surface points."""
    eikonal: float = 5e1
    """Weight of ``| |grad f| - 1 |`` on all points."""
    off_surface: float = 1e2
    """Weight of ``exp(-alpha |f|)`` on the box points."""
    off_surface_alpha: float = 100.0
    """The ``alpha`` of the off-surface term."""
    normal_directions_only: bool = False
    """Use ``1 - |cos(grad f, n)|``: the normals give directions but may be flipped (scans)."""
    eikonal_share: float = 1.0
    """Share of the box and of the near points, in (0, 1], at which the gradient is taken for the
    eikonal term each step (the first ones of each, drawn afresh every step: a random subset whose
    weighted mean estimates the full term without bias). The other box points take the value
    alone, for the off-surface term; the surface points always take the gradient. A speed option
    that costs quality: at 0.1 a run takes 1.5x less time but Chamfer came out 5% worse (see
    docs/experiments.md). It also applies to the unoriented refinement, which uses this loss."""


@dataclass
class DivergenceSchedule:
    """Weight of the divergence term over training (DiGS anneals it away).

    The weight is ``weight`` until ``hold_until`` of the iterations, then falls to 0 by
    ``zero_at`` along ``shape``: ``linear``, ``quintic`` (``(1 - s)^5``: falls fast, then
    lingers) or ``step`` (stays, then drops to 0 at ``zero_at``).
    """

    weight: float = 1e2
    """Weight while held (DiGS's default)."""
    hold_until: float = 0.2
    """Share of the iterations at the full weight."""
    zero_at: float = 0.4
    """Share of the iterations from which the weight is 0."""
    shape: DivergenceShape = "linear"
    """``linear``, ``quintic`` or ``step``."""

    def value(self, iteration: int, total: int) -> float:
        """The weight at ``iteration`` (0-based) of ``total``."""
        progress = iteration / max(1, total)
        if progress < self.hold_until:
            return self.weight
        if progress >= self.zero_at:
            return 0.0
        if self.shape == "step":
            return self.weight
        s = (progress - self.hold_until) / (self.zero_at - self.hold_until)
        if self.shape == "quintic":
            return self.weight * (1.0 - s) ** 5
        return self.weight * (1.0 - s)


@dataclass
class UnorientedLossConfig:
    """The first stage of unoriented mode, DiGS (Ben-Shabat et al. 2022): no normal term, a
    divergence penalty instead, and its learning rate.

    Weights are the DiGS code's defaults for surface reconstruction.
    """

    surface: float = 7e3
    """Weight of ``|f|`` on the surface points."""
    eikonal: float = 5e1
    """Weight of ``| |grad f| - 1 |`` on all points."""
    off_surface: float = 6e2
    """Weight of ``exp(-alpha |f|)`` on the box points."""
    off_surface_alpha: float = 100.0
    """The ``alpha`` of the off-surface term."""
    divergence: DivergenceSchedule = field(default_factory=DivergenceSchedule)
    """Weight of ``|div grad f|`` on the box and near points, over training."""
    divergence_clamp_low: float = 0.1
    """Lower end of the clamp on ``|div|``: below it the term does not push (a hinge)."""
    divergence_clamp_high: float = 50.0
    """Upper end of the clamp on ``|div|``: above it no single point dominates."""
    divergence_share: float = 0.1
    """Share of the box and of the near points, in (0, 1], at which the divergence is taken each
    step (the first ones of each, drawn afresh every step: a random subset whose mean estimates the
    full one without bias). A row with the Laplacian costs about 2.5 rows with the gradient alone;
    after the refinement 0.1 scores within the spread between seeds of 1, while DiGS alone
    (``refine_share = 0``) loses a little and should use 1 (see docs/experiments.md)."""
    learning_rate: float = 1e-4
    """Adam learning rate of the DiGS stage, > 0 (``refinement.learning_rate`` is the refinement's).
    Too high a rate leaves the DiGS fit a thin shell with a second surface inside: ``5e-4`` did so
    on a bumpy sphere where ``1e-4`` fit (see docs/experiments.md)."""


@dataclass
class NormalEstimationConfig:
    """How the refinement estimates each point's normal direction from its neighbours and signs it."""

    neighbours: int = 60
    """Neighbours, >= 3, whose spread gives each point's normal direction for the refinement.
    More smooth noise better and blur thin parts (see docs/experiments.md)."""
    scales: int = 3
    """Neighbourhood sizes each point tries, >= 1: ``neighbours`` and halves of it (60, 30, 15);
    each point keeps the flattest, a small one on clean detail, a large one on noise. 1 takes
    ``neighbours`` alone (see docs/experiments.md)."""
    orientation: Orientation = "propagate"
    """How the refinement signs those directions: ``propagate`` carries one sign along a spanning
    tree of the neighbour graph and lets the DiGS gradient vote once per connected piece (see
    ``orientation``); ``gradient`` takes each point's sign from the DiGS gradient there, which
    fails on noisy input (see docs/experiments.md)."""
    orientation_neighbours: int = 15
    """Neighbours, >= 1, each point is linked to in the graph the signs propagate over."""
    drop_disputed: bool = True
    """With ``propagate``: points whose propagated sign the DiGS gradient there contradicts get
    no normal term in the refinement, only the surface term (their sign is unsure: thin parts,
    noise); see docs/experiments.md."""
    rough_share: float = 0.2
    """Share of the points, in [0, 1), whose neighbourhoods are least flat (largest surface
    variation: noise, sharp edges, parts thinner than the neighbourhood), given no normal term in
    the refinement. Short runs (a few hundred steps) should set 0: there it can leave a structure
    inside a smooth shape (see docs/experiments.md)."""


@dataclass
class RefinementConfig:
    """The second stage of unoriented mode: a fresh SIREN fitted with the oriented loss to the
    normal directions the DiGS field signed, held to that field's sign far from the cloud and kept
    from zero crossings far from every point (see ``unoriented.refinement``)."""

    share: float = 0.5
    """Share of ``train.iterations`` given to the refinement stage, in [0, 1) (0: DiGS alone). The
    DiGS fit is smooth but consistently oriented; the refinement signs the normal directions
    estimated from each point's neighbours (``refinement.normals``) and fits a fresh SIREN to them
    with the oriented loss, which recovers the edges and detail DiGS rounds off."""
    learning_rate: float = 5e-4
    """Adam learning rate of the refinement stage on a clean cloud, > 0; a noisy cloud (noise
    level above ``noise.free_ratio``) gets it divided by ``ratio / free_ratio``, as the oriented
    fit does. Lower than the oriented fit's (``train.learning_rate``): its normals are estimated,
    and on a noisy cloud a faster fit follows the scatter of the points (see docs/experiments.md)."""
    normals: NormalEstimationConfig = field(default_factory=NormalEstimationConfig)
    """How the normal directions the refinement fits are estimated and signed."""
    sign_prior: float = 1e3
    """Weight, >= 0, in the refinement, of agreeing with the DiGS field's sign farther than
    ``prior_distance`` from every point (no sheets in empty space; see ``sign_prior``); 0 turns
    it off."""
    prior_distance: float = 0.1
    """Distance from the cloud, > 0, beyond which the prior holds and at which the clearance is
    capped (network units: the cloud spans 1.8)."""
    clearance: float = 1e3
    """Weight, >= 0, in the refinement, of ``max(0, min(d, prior_distance) - r - |f|)`` at the
    off-surface points (``d`` their distance to the nearest input point, ``r`` the margin below):
    no zero crossing farther than ``r`` from every point, where a thin part with unsure normals
    can otherwise grow a balloon (see ``clearance``); 0 turns it off. See docs/experiments.md for
    its effect per shape."""
    clearance_spacings: float = 4.0
    """The margin ``r``, >= 0, in median point spacings: how far from every input point the
    surface may pass (on clean samples the true surface lies within about 4 spacings)."""
    noisy_clearance_spacings: float = 3.0
    """The margin ``r``, >= 0, on a noisy cloud (noise level above ``noise.free_ratio``) instead
    of ``clearance_spacings``: scattered points cover the surface more closely in their own
    spacing (within about 3.1 spacings at the evaluation's noise), and a lobe the refinement grows
    past a thin part's tip sits just inside 4 (see docs/experiments.md)."""
    clearance_points: int = 2000
    """Extra points, >= 0, a refinement step draws around the places where the field crosses zero
    farther than ``r`` from every point (found every 50 steps; none while there are none); only
    the clearance acts there, by value alone. Without them the uniform box points land in a web
    between two close parts too seldom to remove it (see ``clearance`` and
    docs/experiments.md). 0 turns them off."""


@dataclass
class NoiseConfig:
    """The noise rule: how the cloud's measured noise level changes the fit, in either mode."""

    free_ratio: float = 0.25
    """The noise level, >= 0 (:mod:`.noise_level`: median quadric-fit residual over median point
    spacing; about 0.002-0.05 on clean samples), up to which the points are taken as exact.
    Above it the learning rates of the oriented fit and of the refinement are divided by
    ``ratio / free_ratio``, the refinement's normal weight is multiplied by it, so the smoothed
    normal directions outweigh the scatter of single points, and the refinement's clearance takes
    ``refinement.noisy_clearance_spacings``; clean clouds are untouched. 0 turns all of it off
    (see docs/experiments.md)."""


@dataclass
class TrainConfig:
    """Optimisation settings."""

    iterations: int = 2000
    """Adam steps: exactly (``until``: ``iterations``) or the most a fit takes (``converged``).
    The learning rate's schedule spans them either way."""
    until: StopRule = "iterations"
    """When a fit with the SIREN loss (oriented input, the unoriented refinement) stops:
    ``iterations``, after all of them; or ``converged``, once its surface has settled
    (it moved less than ``converged_spacings`` point spacings between two looks 100 steps apart,
    twice in a row), else at ``iterations``.
    Under the cosine decay the surface moves by about what Adam's rate allows until the rate is
    nearly spent, so ``converged`` stops only in the last stretch, whose steps still lower the
    error (see docs/experiments.md, "Time to quality"). The CLI's ``--iterations`` and the
    add-on's Iterations always mean exactly that many steps."""
    converged_spacings: float = 0.05
    """How little the surface must move between two looks, in median point spacings, for
    ``until=converged`` to stop a fit."""
    learning_rate: float = 1e-3
    """Adam learning rate of the oriented fit on a clean cloud, > 0, at the start of the cosine
    decay. A noisy cloud (noise level above ``noise.free_ratio``) gets it divided by
    ``ratio / free_ratio``: larger steps follow the scatter of the points (at the
    evaluation's noise about half of it). The unoriented stages have their own rates
    (``unoriented.learning_rate``, ``refinement.learning_rate``). The paper's 1e-4
    converges markedly slower in 1,000-2,000 steps (see docs/experiments.md)."""
    lr_decay_final: float = 0.001
    """Learning rate at the last step as a fraction of ``learning_rate`` (cosine decay), in
    (0, 1]. Ending near zero lets the last few hundred steps settle the surface between the
    points: Adam's steps at a tenth of the rate still move the surface by about the detail it
    should resolve (see docs/experiments.md, "Finer than Poisson")."""
    grad_clip: float = 1.0
    """Maximum global norm of the parameter gradient; 0 disables clipping."""
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    seed: int = 0
    """Seed of the network initialisation and of the point sampling."""
    progress_every: int = 25
    """A progress callback every this many steps (and at the last one)."""
    threads: int = 0
    """CPU threads a run trains and meshes with; 0: torch's choice, one per physical core (a
    backend with several CPU workers gives each job its worker's share of the cores)."""
    derivatives: Derivatives = "auto"
    """How gradients and Laplacians are computed: ``autograd`` (double backward), ``forward``
    (forward-mode jets through the sine layers, see derivatives.forward_jets), ``fused``
    (value and gradient with a hand-written backward, see fused_gradient; no Laplacian) or
    ``auto``: forward for the rows whose loss has the divergence (it costs autograd three extra
    backward passes), fused for the rest (the oriented step about 1.5x faster than autograd at
    width 128; see docs/experiments.md)."""
    backward_precision: BackwardPrecision = "float32"
    """Precision of the matrix products in the fused path's backward pass, which only form the
    parameter gradient (the loss, and so the function being fitted, stays float32): ``float32``,
    ``bfloat16``, or ``auto``: bfloat16 on a CPU with native bfloat16 arithmetic (AVX512-BF16 or
    AMX), float32 elsewhere, CUDA included. Faster on such a CPU (about 1.25x a run) but 3.7%
    worse in Chamfer, so an option, not the default (see docs/experiments.md)."""
    reduced_precision_until: float = 0.8
    """Share of the iterations that use the bfloat16 backward when ``backward_precision`` picks
    it; the rest run in float32. Near convergence the parameter gradient is a small sum of large,
    cancelling terms, whose rounding is no longer small against it."""
    compile: CompileChoice = "auto"
    """``torch.compile`` the fused path's two passes (fusing their elementwise work, which bounds
    the CPU step by memory traffic): ``on``, ``off`` or ``auto``: on for the CPU when a C++
    compiler is found, off on CUDA, where the step is bound by kernel launches that compiling
    does not cut and the compile only delays the first preview (docs/results.md, "On a GPU").
    The first compile on a machine takes about 20 s (then cached on disk, about 3 s a process);
    a failed compile falls back to eager."""
    matmul_precision: MatmulPrecision = "auto"
    """Precision of the hidden layers' float32 matrix products on CUDA: ``float32``, ``tf32``
    (10-bit mantissa inputs on tensor cores, float32 sums: about 6x the float32 rate on an H100)
    or ``auto``: tf32 on CUDA, float32 on the CPU (which has no TF32; the setting does nothing
    there). The first layer (three inputs, ``omega_0`` times 30) is computed exactly on CUDA
    whatever this says: TF32's rounding of its inputs would be about 1e-2 rad of phase. TF32 is
    a process-wide switch of torch: it stays on while any CUDA training in the process asked
    for it."""
    adam: AdamKernel = "auto"
    """Kernel of the Adam update: ``for-loop`` (one parameter at a time), ``foreach`` (all
    parameters per operation), ``fused`` (one kernel for the whole update) or ``auto``: fused on
    CUDA, where the update is a few dozen small launches otherwise; the for-loop on the CPU.
    The three agree to float32 rounding, not bit for bit."""


@dataclass
class MeshConfig:
    """Extraction of the final mesh."""

    resolution: int = 256
    """Grid points along the longest side of the padded bounding box."""
    chunk_points: int = 131072
    """SDF evaluations per batch: bounds the memory of meshing, not its result."""
    narrow_band: bool = True
    """Evaluate the network only near its zero level set (coarse to fine, signs elsewhere
    inferred from a slope bound of 1.5, see ``meshing.BAND_LIPSCHITZ``); the surface is the
    dense grid's to a small fraction of a voxel, in a fraction of the time (see
    docs/experiments.md). A separate small piece where the field is steeper than the bound can
    be missed: ``False`` evaluates every grid point."""
    min_component_fraction: float = 0.002
    """Drop connected pieces with less than this share of the total area; 0 keeps all."""
    support_distance: float = 0.01
    """A surface point is supported by the cloud within this distance (share of its box diagonal)."""
    min_supported_share: float = 0.5
    """Drop pieces with less than this share of their area supported (ghost sheets); 0 keeps all."""
    trim: TrimChoice = "auto"
    """Cutting away surface no input point supports, for open scans (one side, a facade, a
    terrain), whose fit otherwise closes the unscanned side: ``auto`` cuts only when the cloud
    covers part of the surface (more than 4% of the area farther than four point spacings
    from every point), then what lies farther than two spacings (see
    ``meshing.trimming.trim_mesh``), and leaves a closed shape's mesh as it is; ``off`` never
    cuts; ``distance`` cuts every face farther than ``trim_distance``."""
    trim_distance: float = 0.02
    """With ``trim = "distance"``: cut faces farther than this (share of the cloud's box
    diagonal) from every input point; 0 cuts nothing."""
    padding: float = 0.05
    """Extra margin around the cloud's box, as a fraction of its longest side."""
    voxel_size: float = 0.0
    """Lattice spacing of the final mesh in the cloud's own units, the size of the smallest detail
    it can show (and, with ``tiles.size`` 0, what decides whether a large cloud is cut into tiles:
    ``tiles.voxels``); 0 takes it from ``resolution`` over the padded box, or over one tile's."""


@dataclass
class TilesConfig:
    """A large cloud (a building, a street) fitted as overlapping tiles, a field each, blended into
    one surface on one lattice (:mod:`~siren_recon.engine.tiling`)."""

    size: float = 0.0
    """Edge length of a tile in the cloud's own units; 0: automatic, by ``voxels``."""
    voxels: int = 200
    """With ``size`` 0 and a ``mesh.voxel_size`` given: a cloud whose padded box is longer than this
    many voxels is cut into tiles of this many voxels (10 m at a 5 cm voxel: a network a tile keeps
    a 1 m chimney, which one over a 40 m street rounds away); without ``mesh.voxel_size``, or with 0
    here, a cloud is one field."""
    overlap: float = 0.25
    """How far a tile reaches into its neighbours, as a share of its edge: it trains on the points
    out to there, and its field fades out across that band."""
    iteration_share: float = 0.125
    """Share of ``train.iterations`` each tile's field trains (at least 2 steps) when a cloud is
    cut into tiles: a tile's piece of a scene takes a network fewer steps than a whole object,
    and more tiles of fewer steps keep more detail in the same time (see docs/results.md,
    "Scenes"). ``--iterations N`` sets it to 1: every field then trains exactly ``N`` steps."""
    sparse_sample_share: float = 0.5
    """Least share of ``sampling``'s counts a sparse tile's step draws, in (0, 1]. A tile with fewer
    points than twice ``sampling.surface_points`` draws, of each of the three counts, its points
    over twice the surface count, and no less than this share: a full draw would take each of
    such a tile's points about twice or more (docs/experiments.md, "Fewer samples in sparse
    tiles"). 1: every tile the full counts."""
    dense_refinement_share: float = 0.75
    """``refinement.share`` of a dense tile's fit without normals, in [0, 1): a tile with at least
    twice ``sampling.surface_points`` points, whose step draws each of them less than once. Its
    points show the corners where a chimney or a parapet meets its roof, which the refinement's
    steps sharpen; a sparse tile keeps ``refinement.share``, as every whole cloud does: there a
    longer refinement fits the noise between its points (docs/experiments.md, "Where a tile's
    steps go"). 0, or ``refinement.share`` 0 (DiGS alone): every tile ``refinement.share``."""


@dataclass
class PreviewConfig:
    """Progressive meshes while training: when, and at what resolution."""

    enabled: bool = True
    """Whether previews are produced at all (the final mesh always is)."""
    first_iteration: int = 10
    """Iteration of the first (coarse) preview. The steps up to it run without compilation
    (``train.compile``), so that the preview does not wait for the compiler: on 2 cores a
    20,000-point cloud's shape shows about 2 s after the start (see docs/results.md)."""
    growth: float = 2.0
    """Each later preview comes this many times as many iterations after the first."""
    every_seconds: float = 8.0
    """Most seconds from the start of one preview to the next: when the schedule's next one is
    further away, a preview comes at the first step this many seconds after the last one began (at
    the next scheduled resolution, or ``max_resolution``; never before a fit's first scheduled
    one), so that the viewport changes at least every 10 s, the last preview to the final mesh
    included; 0 keeps to the schedule alone."""
    min_resolution: int = 48
    """Resolution of the first preview."""
    max_resolution: int = 128
    """Resolution of the last previews (the final mesh uses ``MeshConfig.resolution``)."""
    thread: PreviewThread = "auto"
    """Mesh previews on a thread of their own, from a copy of the weights taken at the preview's
    iteration, so training does not wait for marching cubes: ``on``, ``off`` or ``auto``: on
    for CUDA, off on the CPU (where the meshing competes with training for the same cores; see
    docs/scaling.md). The meshes are the same either way, and come in the same order, all of a
    stage's before the next stage starts and before the final mesh."""


@dataclass
class ReconstructionConfig:
    """Everything that decides a reconstruction."""

    mode: Mode = "auto"
    """``oriented`` (normals given), ``unoriented`` or ``auto`` (oriented when normals exist)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    oriented: OrientedLossConfig = field(default_factory=OrientedLossConfig)
    unoriented: UnorientedLossConfig = field(default_factory=UnorientedLossConfig)
    refinement: RefinementConfig = field(default_factory=RefinementConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    tiles: TilesConfig = field(default_factory=TilesConfig)
    preview: PreviewConfig = field(default_factory=PreviewConfig)

    def __post_init__(self) -> None:
        validate_config(self)


BOUNDS: dict[str, Bound] = {
    "model.hidden_features": at_least(1),
    "model.hidden_layers": at_least(0),
    "model.omega_0": above(0),
    "model.init_radius": between(0, 1, low_open=True, high_open=True),
    "sampling.surface_points": at_least(1),
    "sampling.box_points": at_least(1),
    "sampling.near_points": at_least(0),
    "sampling.near_sigma": above(0),
    "noise.free_ratio": at_least(0),
    "oriented.eikonal_share": between(0, 1, low_open=True),
    "unoriented.divergence.hold_until": between(0, 1),
    "unoriented.divergence.zero_at": between(0, 1),
    "unoriented.divergence_clamp_low": at_least(0),
    "unoriented.divergence_share": between(0, 1, low_open=True),
    "unoriented.learning_rate": above(0),
    "refinement.share": between(0, 1, high_open=True),
    "refinement.learning_rate": above(0),
    "refinement.normals.neighbours": at_least(3),
    "refinement.normals.scales": at_least(1),
    "refinement.normals.orientation_neighbours": at_least(1),
    "refinement.normals.rough_share": between(0, 1, high_open=True),
    "refinement.sign_prior": at_least(0),
    "refinement.prior_distance": above(0),
    "refinement.clearance": at_least(0),
    "refinement.clearance_spacings": at_least(0),
    "refinement.noisy_clearance_spacings": at_least(0),
    "refinement.clearance_points": at_least(0),
    "train.iterations": at_least(1),
    "train.learning_rate": above(0),
    "train.lr_decay_final": between(0, 1, low_open=True),
    "train.grad_clip": at_least(0),
    "train.progress_every": at_least(1),
    "train.threads": at_least(0),
    "train.converged_spacings": at_least(0),
    "train.reduced_precision_until": between(0, 1),
    "mesh.resolution": between(8, 2048),
    "mesh.chunk_points": at_least(1024),
    "mesh.min_component_fraction": between(0, 1, high_open=True),
    "mesh.support_distance": above(0),
    "mesh.min_supported_share": between(0, 1),
    "mesh.trim_distance": at_least(0),
    "mesh.padding": between(0, 1),
    "mesh.voxel_size": at_least(0),
    "tiles.size": at_least(0),
    "tiles.voxels": at_least(0),
    "tiles.overlap": between(0, 1, low_open=True),
    "tiles.iteration_share": between(0, 1, low_open=True),
    "tiles.sparse_sample_share": between(0, 1, low_open=True),
    "tiles.dense_refinement_share": between(0, 1, high_open=True),
    "preview.first_iteration": at_least(1),
    "preview.growth": above(1),
    "preview.every_seconds": at_least(0),
    "preview.min_resolution": at_least(8),
}
"""The interval each number setting must lie in, by dotted name (settings not named: any value)."""

DEPRECATED_NAMES: dict[str, str] = {
    "unoriented.noise_free_ratio": "noise.free_ratio",
    "unoriented.refine_share": "refinement.share",
    "unoriented.refine_learning_rate": "refinement.learning_rate",
    "unoriented.direction_neighbours": "refinement.normals.neighbours",
    "unoriented.direction_scales": "refinement.normals.scales",
    "unoriented.orientation": "refinement.normals.orientation",
    "unoriented.orientation_neighbours": "refinement.normals.orientation_neighbours",
    "unoriented.drop_disputed_normals": "refinement.normals.drop_disputed",
    "unoriented.rough_normal_share": "refinement.normals.rough_share",
    "unoriented.refine_sign_prior": "refinement.sign_prior",
    "unoriented.refine_prior_distance": "refinement.prior_distance",
    "unoriented.refine_clearance": "refinement.clearance",
    "unoriented.clearance_spacings": "refinement.clearance_spacings",
    "unoriented.noisy_clearance_spacings": "refinement.noisy_clearance_spacings",
    "unoriented.clearance_points": "refinement.clearance_points",
}
"""Old dotted names :func:`apply_overrides` still accepts, each with the name it now sets; using
one warns with a :class:`FutureWarning` (shown to users by default)."""

RELATIONS: tuple[tuple[str, Callable[[ReconstructionConfig], bool]], ...] = (
    ("unoriented.divergence.hold_until <= unoriented.divergence.zero_at",
     lambda c: c.unoriented.divergence.hold_until <= c.unoriented.divergence.zero_at),
    ("unoriented.divergence_clamp_low < unoriented.divergence_clamp_high",
     lambda c: c.unoriented.divergence_clamp_low < c.unoriented.divergence_clamp_high),
    ("preview.min_resolution <= preview.max_resolution",
     lambda c: c.preview.min_resolution <= c.preview.max_resolution),
)
"""Rules between two settings, each with its statement (printed in the settings table)."""


def validate_config(config: ReconstructionConfig) -> None:
    """Raise :class:`ConfigError` naming the first field with an impossible value."""
    for name, owner, spec in setting_fields(config):
        value = getattr(owner, spec.name)
        choices = setting_choices(owner, spec.name)
        if choices and value not in choices:
            raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
        bound = BOUNDS.get(name)
        if bound is not None and not bound.contains(value):
            raise ConfigError(f"{name} must be {bound.requirement()}, got {value!r}")
    for statement, holds in RELATIONS:
        if not holds(config):
            raise ConfigError(f"the settings need {statement}")


def setting_fields(config: Any, prefix: str = "") -> Iterator[tuple[str, Any, dataclasses.Field]]:
    """Every leaf setting of ``config`` as (dotted name, the section holding it, its field)."""
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        if dataclasses.is_dataclass(value):
            yield from setting_fields(value, f"{prefix}{spec.name}.")
        else:
            yield f"{prefix}{spec.name}", config, spec


def setting_choices(section: Any, name: str) -> tuple[str, ...]:
    """The values a ``Literal`` field of ``section`` allows; empty for a free field."""
    cls: type = type(section)
    hint = _type_hints(cls).get(name)
    return tuple(get_args(hint)) if get_origin(hint) is Literal else ()


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def setting_names(config: ReconstructionConfig | None = None) -> list[str]:
    """Every dotted name :func:`apply_overrides` accepts, in declaration order."""
    return [name for name, _, _ in setting_fields(config or ReconstructionConfig())]


def closest_setting(key: str) -> str | None:
    """The valid setting name most like ``key``: same last part first (``resolution`` ->
    ``mesh.resolution``), else the nearest by :func:`difflib.get_close_matches`."""
    names = setting_names()
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [name for name in names if name.rsplit(".", 1)[-1] == leaf]
    if same_leaf:
        return difflib.get_close_matches(key, same_leaf, n=1, cutoff=0.0)[0]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    return close[0] if close else None


def config_to_dict(config: ReconstructionConfig) -> dict[str, Any]:
    """Plain nested dict of builtins (safe for msgpack, JSON and ``torch.load(weights_only=True)``)."""
    return dataclasses.asdict(config)


def config_from_dict(data: Mapping[str, Any]) -> ReconstructionConfig:
    """Inverse of :func:`config_to_dict`; unknown keys raise :class:`ConfigError`."""
    return apply_overrides(ReconstructionConfig(), _flatten(data))


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def apply_overrides(config: ReconstructionConfig, overrides: Mapping[str, Any]) -> ReconstructionConfig:
    """Return a copy of ``config`` with dotted keys set, type-checked against the dataclasses.

    ``{"train.iterations": 500, "mode": "oriented"}`` sets two fields. Ints are accepted for
    float fields; anything else of the wrong type, or an unknown key, raises :class:`ConfigError`.
    A name of :data:`DEPRECATED_NAMES` sets its new name's field and warns.
    """
    updated = copy.deepcopy(config)
    for key, value in overrides.items():
        key = current_name(str(key))
        parts = key.split(".")
        target: Any = updated
        for part in parts[:-1]:
            if not dataclasses.is_dataclass(target) or part not in _field_names(target):
                raise ConfigError(_unknown_key(key))
            target = getattr(target, part)
        leaf = parts[-1]
        if not dataclasses.is_dataclass(target) or leaf not in _field_names(target):
            raise ConfigError(_unknown_key(key))
        current = getattr(target, leaf)
        if dataclasses.is_dataclass(current):
            raise ConfigError(f"config key {key!r} names a section, not a field")
        setattr(target, leaf, _coerce(key, current, value))
    validate_config(updated)
    return updated


def current_name(key: str) -> str:
    """``key``, or the name a deprecated ``key`` is now, with a :class:`FutureWarning` naming it."""
    new = DEPRECATED_NAMES.get(key)
    if new is None:
        return key
    warnings.warn(f"setting {key!r} is deprecated: use {new!r}", FutureWarning, stacklevel=3)
    return new


def _unknown_key(key: str) -> str:
    """The message for an unknown key: the key, and the closest valid one when there is one."""
    closest = closest_setting(str(key))
    hint = f"; did you mean {closest!r}?" if closest else ""
    return f"unknown config key {key!r}{hint}"


def _field_names(obj: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(obj)}


def _coerce(key: str, current: Any, value: Any) -> Any:
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"config key {key!r} must be a finite number, got {value!r}")
            return float(value)
    elif isinstance(current, str):
        if isinstance(value, str):
            return value
    raise ConfigError(
        f"config key {key!r} expects {type(current).__name__}, got {type(value).__name__} {value!r}"
    )
