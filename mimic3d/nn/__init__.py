"""StyleGAN2 building blocks with EG3D's numerics and parameter names, in plain PyTorch."""

from __future__ import annotations

from mimic3d.nn.backbone import StyleGAN2Backbone
from mimic3d.nn.discriminator import (
    Discriminator,
    DiscriminatorBlock,
    DiscriminatorEpilogue,
    MinibatchStdLayer,
)
from mimic3d.nn.layers import ACTIVATIONS, Conv2dLayer, FullyConnectedLayer, bias_act, block_format
from mimic3d.nn.mapping import MappingNetwork, normalize_2nd_moment
from mimic3d.nn.modulated import SynthesisLayer, ToRGBLayer, modulated_conv2d
from mimic3d.nn.resample import conv2d_resample, downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d
from mimic3d.nn.synthesis import SynthesisBlock, SynthesisNetwork

__all__ = [
    "ACTIVATIONS",
    "Conv2dLayer",
    "Discriminator",
    "DiscriminatorBlock",
    "DiscriminatorEpilogue",
    "FullyConnectedLayer",
    "MappingNetwork",
    "MinibatchStdLayer",
    "StyleGAN2Backbone",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
    "bias_act",
    "block_format",
    "conv2d_resample",
    "downsample2d",
    "filter2d",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
