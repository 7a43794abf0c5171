"""mimic3d: 3D-aware GANs (EG3D, Mimic3D, EpiGRAF, NeRF-GAN distillation) in pure PyTorch."""

__version__ = "0.1.0"
