"""Real images into 3D: latent inversion (W, W+), pivotal tuning, camera estimation, several views.

One concept per module: ``views`` (targets and renders), ``objectives`` (losses, regularisers, PSNR),
``latents`` (StyleGAN2-projector latent fitting), ``cameras`` (camera statistics, pose search, joint
camera optimisation), ``pivotal`` (PTI with its locality regulariser), ``multiview`` (the driver),
``targets`` (image and camera files), ``outputs`` (files written) and ``api`` (``mimic3d.invert``).
"""

from mimic3d.inversion.api import invert, open_network
from mimic3d.inversion.cameras import OrbitCameras, candidate_poses, model_camera, search_cameras
from mimic3d.inversion.latents import LatentStatistics, ProjectorSchedule, fit_latent, latent_statistics
from mimic3d.inversion.multiview import METHODS, InversionConfig, InversionResult, invert_targets
from mimic3d.inversion.objectives import ReconstructionLoss, noise_regularization, psnr
from mimic3d.inversion.outputs import OutputOptions, write_outputs
from mimic3d.inversion.pivotal import LocalityRegularizer, pivotal_tuning
from mimic3d.inversion.targets import load_targets
from mimic3d.inversion.views import Targets, render_views

__all__ = [
    "METHODS",
    "InversionConfig",
    "InversionResult",
    "LatentStatistics",
    "LocalityRegularizer",
    "OrbitCameras",
    "OutputOptions",
    "ProjectorSchedule",
    "ReconstructionLoss",
    "Targets",
    "candidate_poses",
    "fit_latent",
    "invert",
    "invert_targets",
    "latent_statistics",
    "load_targets",
    "model_camera",
    "noise_regularization",
    "open_network",
    "pivotal_tuning",
    "psnr",
    "render_views",
    "search_cameras",
    "write_outputs",
]
