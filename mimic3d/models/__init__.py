"""Networks: the tri-plane generator (EG3D, Mimic3D, EpiGRAF) and its discriminators."""

from __future__ import annotations

from mimic3d.models.aware3d import Aware3DBlock
from mimic3d.models.background import BackgroundConfig, SphereBackground
from mimic3d.models.config import GeneratorConfig, generator_preset, generator_preset_names
from mimic3d.models.discriminator import DualDiscriminator, DualDiscriminatorConfig, dual_discriminator_preset
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.patch_discriminator import (
    HyperModulatedPatchDiscriminator,
    HyperModulatedPatchDiscriminatorConfig,
    PatchDiscriminator,
    PatchDiscriminatorConfig,
    hyper_patch_discriminator_preset,
    patch_discriminator_preset,
)
from mimic3d.models.superresolution import SuperResolution
from mimic3d.models.triplane_conv import reorganize_triplane
from mimic3d.models.triplanes import Triplanes

__all__ = [
    "Aware3DBlock",
    "BackgroundConfig",
    "DualDiscriminator",
    "DualDiscriminatorConfig",
    "GeneratorConfig",
    "HyperModulatedPatchDiscriminator",
    "HyperModulatedPatchDiscriminatorConfig",
    "PatchDiscriminator",
    "PatchDiscriminatorConfig",
    "SphereBackground",
    "SuperResolution",
    "TriplaneGenerator",
    "Triplanes",
    "dual_discriminator_preset",
    "generator_preset",
    "generator_preset_names",
    "hyper_patch_discriminator_preset",
    "patch_discriminator_preset",
    "reorganize_triplane",
]
