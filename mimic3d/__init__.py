"""mimic3d: 3D-aware GANs (EG3D, Mimic3D, EpiGRAF, NeRF-GAN distillation) in pure PyTorch.

Public API: ``mimic3d.load(path)`` returns an inference-ready generator from our portable format or
an official EG3D/Mimic3D/EpiGRAF pickle (read without executing code); ``mimic3d.save(path, G)``;
``mimic3d.invert(images, network, ...)`` turns images of one subject into a latent and a tuned
generator (``mimic3d.inversion``, imported on first use).
"""

__version__ = "0.1.0"

from mimic3d.checkpoints.load import load, load_networks, save  # noqa: E402

__all__ = ["__version__", "invert", "load", "load_networks", "save"]


def __getattr__(name: str):
    # The inversion stack (LPIPS, tools) loads only when used, not on every ``import mimic3d``.
    if name == "invert":
        from mimic3d.inversion import invert

        return invert
    raise AttributeError(f"module 'mimic3d' has no attribute {name!r}")
