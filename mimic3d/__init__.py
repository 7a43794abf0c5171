"""mimic3d: 3D-aware GANs (EG3D, Mimic3D, EpiGRAF, NeRF-GAN distillation) in pure PyTorch.

Public API: ``mimic3d.load(path)`` returns an inference-ready generator from our portable format or
an official EG3D/Mimic3D/EpiGRAF pickle (read without executing code); ``mimic3d.save(path, G)``.
"""

__version__ = "0.1.0"

from mimic3d.checkpoints.load import load, load_networks, save  # noqa: E402

__all__ = ["__version__", "load", "load_networks", "save"]
