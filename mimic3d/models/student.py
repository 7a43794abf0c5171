"""The distilled student of NeRF-GAN distillation (Shahbazi et al. 2023): a pose-conditioned
convolutional generator that needs no volume rendering.

(teacher w, camera c) -> pose mapping -> w' -> StyleGAN2 synthesis at the teacher's rendering
resolution -> [32-channel feature image | depth] -> EG3D's 2D super-resolution -> image.

- The teacher's mapping network is kept, frozen (``teacher_mapping``, ``w_avg`` included), so that
  ``S(z, c)`` draws the teacher's ws and ``S.mapping`` / ``S.synthesis`` have the teacher's API:
  a student drops in wherever a ``TriplaneGenerator`` is rendered through ``G(z, c)``,
  ``G.mapping`` and ``G.synthesis`` (generate, video, epi, metrics, inversion).
- The pose mapping (``pose_mapping``) runs once per student layer on the teacher ws at the
  matching depth (``layer_index``), each standardised by the teacher's w statistics (``w_mean``,
  ``w_std``) without the second-moment normalisation of z, so truncation (which scales ws toward
  the mean) still reaches the student, and style mixing of teacher ws mixes the student's layers.
  With the usual broadcast ws (all layers equal) this is the paper's single mapping (w, c) -> w'.
- ``feature_synthesis`` predicts the teacher's feature image (first 3 channels: the low-resolution
  image) plus one depth channel through a per-channel affine map (``output_gain``, ``output_bias``)
  fitted at initialisation so that the fresh network's outputs have the teacher's per-channel mean
  and spread (a data-dependent initialisation: unscaled, they start several times too spread).
- ``superresolution`` is EG3D's; it is driven by the teacher's last w, as in the teacher, so a
  copy of the teacher's module (``student_from_teacher`` for a 2D-branch teacher) reproduces the
  teacher's image exactly from the teacher's features.

The student has one branch, "2d" (its convolutional render); it has no tri-planes, so ``planes``,
``render*`` and ``sample_density`` (meshes, plane views, the 3D branch) raise ``NO_3D``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mimic3d.camera import PRESETS, sample_labels
from mimic3d.models.config import SUPERRESOLUTION_INPUT_DIVISOR, GeneratorConfig
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.inputs import checked_camera, checked_input, map_latents
from mimic3d.models.superresolution import SuperResolution
from mimic3d.nn.mapping import MappingNetwork
from mimic3d.nn.modulated import NOISE_MODES
from mimic3d.nn.synthesis import SynthesisNetwork
from mimic3d.render import RenderConfig

NO_3D = "a student has no 3D representation; use its teacher"
STUDENT_BRANCHES = ("2d",)
TEACHER_BRANCHES = ("2d", "3d")
# EG3D's super-resolution for each final image size; other sizes get hybrid2x with these widths.
EG3D_SUPERRESOLUTION = {
    512: ("hybrid8xdc", (256, 128)),
    256: ("hybrid4x", (128, 64)),
    128: ("hybrid2x", (128, 64)),
}
DEFAULT_SUPERRESOLUTION = ("hybrid2x", (128, 64))
DEFAULT_RESOLUTION = 64  # EG3D's neural rendering resolution, for teachers that render at full size


@dataclass
class StudentConfig:
    """Architecture of a student; ``teacher`` is its teacher's configuration (mapping, resolution, cameras).

    ``teacher_branch``: the branch it imitates ("2d": the neural render + super-resolution; "3d":
    the direct full-resolution render, for teachers without super-resolution or Mimic3D's 3D branch).
    ``neural_rendering_resolution``: size of the predicted feature image (the teacher's rendering
    resolution); ``channel_base`` / ``channel_max``: widths of its synthesis network as StyleGAN2's
    (min(channel_base / res, channel_max)); ``mapping_layers``: FC layers of the pose mapping.
    The ``sr_*`` fields configure EG3D's super-resolution exactly as in ``GeneratorConfig``.
    ``teacher_source``: where the teacher was loaded from when distilled (for messages and
    evaluation; not needed to run the student).
    """

    teacher: GeneratorConfig = field(default_factory=GeneratorConfig)
    teacher_branch: str = "2d"
    neural_rendering_resolution: int = 64
    channel_base: int = 32768
    channel_max: int = 512
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    conv_clamp: float | None = None
    superresolution: str = "hybrid8xdc"
    sr_channels: tuple[int, int] = (256, 128)
    sr_antialias: bool = True
    sr_num_fp16_res: int = 0
    sr_noise_mode: str = "none"
    teacher_source: str = ""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def rendering(self) -> RenderConfig:
        """The teacher's rendering settings (ray range, cameras): what the tools pick cameras from."""
        return self.teacher.rendering

    @property
    def feature_channels(self) -> int:
        """Channels of the predicted feature image (the teacher's decoder output; first 3 = RGB)."""
        return self.teacher.decoder_output_dim

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        if not isinstance(self.teacher, GeneratorConfig):
            raise ValueError(f"teacher: expected a GeneratorConfig, got {type(self.teacher).__name__}")
        if self.teacher_branch not in TEACHER_BRANCHES:
            raise ValueError(
                f"teacher_branch: expected one of {TEACHER_BRANCHES}, got {self.teacher_branch!r}"
            )
        if self.teacher_branch == "2d" and self.teacher.superresolution == "none":
            raise ValueError(
                "teacher_branch: a teacher without super-resolution renders its image directly; use '3d'"
            )
        value = self.neural_rendering_resolution
        if value < 4 or value & (value - 1) or value > self.teacher.img_resolution:
            raise ValueError(
                "neural_rendering_resolution: expected a power of two in "
                f"[4, {self.teacher.img_resolution}], got {value}"
            )
        for name in ("channel_base", "channel_max", "mapping_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.superresolution not in SUPERRESOLUTION_INPUT_DIVISOR:
            raise ValueError(
                f"superresolution: expected one of {list(SUPERRESOLUTION_INPUT_DIVISOR)}, "
                f"got {self.superresolution!r}"
            )
        if self.teacher.img_resolution % SUPERRESOLUTION_INPUT_DIVISOR[self.superresolution]:
            raise ValueError(
                f"superresolution: {self.superresolution} does not fit {self.teacher.img_resolution}"
            )
        if self.feature_channels < 3:
            raise ValueError(
                "teacher.decoder_output_dim: the feature image needs at least the 3 RGB channels"
            )
        if len(self.sr_channels) != 2 or any(int(ch) < 1 for ch in self.sr_channels):
            raise ValueError(f"sr_channels: expected two positive widths, got {self.sr_channels!r}")
        if self.sr_noise_mode not in NOISE_MODES:
            raise ValueError(f"sr_noise_mode: expected one of {NOISE_MODES}, got {self.sr_noise_mode!r}")
        if self.conv_clamp is not None and self.conv_clamp <= 0:
            raise ValueError(f"conv_clamp: expected None or a positive number, got {self.conv_clamp}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready dict (``from_dict`` inverts it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        from mimic3d.checkpoints.portable import config_from_dict

        return config_from_dict(cls, data, where="student config")


def student_config(
    teacher: GeneratorConfig, teacher_branch: str | None = None, **overrides: Any
) -> StudentConfig:
    """The student of a teacher configuration: the teacher's rendering resolution and super-resolution
    when it has one, else EG3D's for the image size (rendering at 64, or the SR input if smaller).

    ``teacher_branch`` None: "2d" for teachers with super-resolution, else "3d". ``overrides``: any
    other ``StudentConfig`` field.
    """
    has_sr = teacher.superresolution != "none"
    if teacher_branch is None:
        teacher_branch = "2d" if has_sr else "3d"
    if has_sr:
        options: dict[str, Any] = dict(
            neural_rendering_resolution=teacher.neural_rendering_resolution,
            superresolution=teacher.superresolution,
            sr_channels=tuple(teacher.sr_channels),
            sr_antialias=teacher.sr_antialias,
            sr_num_fp16_res=teacher.sr_num_fp16_res,
            sr_noise_mode=teacher.sr_noise_mode,
        )
    else:
        kind, channels = EG3D_SUPERRESOLUTION.get(teacher.img_resolution, DEFAULT_SUPERRESOLUTION)
        sr_input = teacher.img_resolution // SUPERRESOLUTION_INPUT_DIVISOR[kind]
        options = dict(
            neural_rendering_resolution=min(DEFAULT_RESOLUTION, sr_input),
            superresolution=kind,
            sr_channels=channels,
        )
    options.update(overrides)
    return StudentConfig(teacher=copy.deepcopy(teacher), teacher_branch=teacher_branch, **options)


def teacher_num_ws(teacher: GeneratorConfig) -> int:
    """How many ws the teacher's mapping network broadcasts (built on the meta device: no memory)."""
    with torch.device("meta"):
        return TriplaneGenerator(copy.deepcopy(teacher)).num_ws


def student_layer_index(teacher_ws: int, student_ws: int) -> list[int]:
    """Teacher w feeding each student w: evenly spread over depth, first to first and last to last."""
    if student_ws == 1:
        return [0]
    return [round(i * (teacher_ws - 1) / (student_ws - 1)) for i in range(student_ws)]


class StudentGenerator(nn.Module):
    """Distilled convolutional generator configured by a ``StudentConfig`` (see the module docstring)."""

    branches = STUDENT_BRANCHES

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        if not isinstance(config, StudentConfig):
            raise ValueError(f"config: expected a StudentConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        teacher = config.teacher
        self.z_dim, self.c_dim, self.w_dim = teacher.z_dim, teacher.c_dim, teacher.w_dim
        self.img_resolution = teacher.img_resolution
        self.num_ws = teacher_num_ws(teacher)
        self.teacher_mapping = MappingNetwork(
            teacher.z_dim,
            teacher.mapping_c_dim,
            teacher.w_dim,
            num_ws=self.num_ws,
            num_layers=teacher.mapping_layers,
            lr_multiplier=teacher.mapping_lr_multiplier,
        )
        channels = config.feature_channels
        self.feature_synthesis = SynthesisNetwork(
            w_dim=teacher.w_dim,
            img_resolution=config.neural_rendering_resolution,
            img_channels=channels + 1,
            channel_base=config.channel_base,
            channel_max=config.channel_max,
            num_fp16_res=0,
            conv_clamp=config.conv_clamp,
            fused_modconv_default="inference_only",
        )
        self.pose_mapping = MappingNetwork(
            teacher.w_dim,
            teacher.c_dim,
            teacher.w_dim,
            num_ws=None,
            num_layers=config.mapping_layers,
            lr_multiplier=config.mapping_lr_multiplier,
            w_avg_beta=None,
            normalize_z=False,
        )
        self.superresolution = SuperResolution(
            config.superresolution,
            channels,
            teacher.img_resolution,
            config.sr_channels,
            w_dim=teacher.w_dim,
            antialias=config.sr_antialias,
            # As GeneratorConfig.sr_conv_clamp: EG3D clamps the SR whenever it marks it for fp16.
            conv_clamp=256.0 if config.sr_num_fp16_res > 0 else None,
            use_fp16=config.sr_num_fp16_res > 0,
            noise_mode=config.sr_noise_mode,
        )
        index = student_layer_index(self.num_ws, self.feature_synthesis.num_ws)
        self.register_buffer("layer_index", torch.tensor(index), persistent=False)
        self.register_buffer("w_mean", torch.zeros([teacher.w_dim]))
        self.register_buffer("w_std", torch.ones([]))
        self.register_buffer("output_gain", torch.ones([channels + 1]))
        self.register_buffer("output_bias", torch.zeros([channels + 1]))
        self.register_buffer("dataset_label_std", torch.zeros([teacher.c_dim]))
        self.teacher_mapping.requires_grad_(False)

    # ------------------------------------------------------------------ latents

    def mapping(
        self,
        z: Tensor,
        c: Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        labels: Tensor | None = None,
    ) -> Tensor:
        """The teacher's mapping: z [N, z_dim], conditioning camera c [N, 25] -> teacher ws
        [N, num_ws, w_dim]. ``update_emas`` is accepted and ignored: the teacher's w_avg is frozen."""
        return map_latents(
            self.teacher_mapping,
            self.config.teacher,
            z,
            c,
            truncation_psi,
            truncation_cutoff,
            False,
            labels,
            self.w_mean,
        )

    @torch.no_grad()
    def set_statistics(self, ws: Tensor, c: Tensor, features: Tensor, depth: Tensor) -> None:
        """Fit the input standardisation to teacher ws [N, num_ws, w_dim] (their mean and RMS spread),
        then the output map so that this network's outputs for the first M of them (cameras c
        [N, 25]) have the per-channel mean and std of the teacher's feature images [M, C, r, r] and
        depths [M, 1, r, r]."""
        w = ws[:, 0].float()
        self.w_mean.copy_(w.mean(dim=0))
        self.w_std.copy_((w - self.w_mean).square().mean().sqrt().clamp_min(1e-8))
        count = features.shape[0]
        raw = self.feature_synthesis(self.student_ws(ws[:count], c[:count]), noise_mode="const")
        raw = raw.transpose(0, 1).flatten(1)
        target = torch.cat([features, depth], dim=1).float().transpose(0, 1).flatten(1)
        gain = target.std(dim=1).clamp_min(1e-4) / raw.std(dim=1).clamp_min(1e-8)
        self.output_gain.copy_(gain)
        self.output_bias.copy_(target.mean(dim=1) - raw.mean(dim=1) * gain)

    def student_ws(self, ws: Tensor, c: Tensor) -> Tensor:
        """Teacher ws [N, num_ws, w_dim] and rendering camera c [N, 25] -> the synthesis ws
        [N, student num_ws, w_dim]: the pose mapping of each standardised teacher w at its layer."""
        ws = checked_input(ws, "ws", [self.num_ws, self.w_dim], "teacher ws", self.w_mean)
        c = checked_camera(c, self.c_dim, ws.shape[0], self.w_mean)
        n, layers = ws.shape[0], self.layer_index.shape[0]
        w = (ws.index_select(1, self.layer_index) - self.w_mean) / self.w_std
        cameras = c[:, None].expand(n, layers, self.c_dim)
        out = self.pose_mapping(w.reshape(n * layers, self.w_dim), cameras.reshape(n * layers, self.c_dim))
        return out.view(n, layers, self.w_dim)

    # ------------------------------------------------------------------ images

    def synthesis(
        self,
        ws: Tensor,
        c: Tensor,
        branch: str = "2d",
        noise_mode: str = "const",
        perturb: bool | None = None,
        neural_rendering_resolution: int | None = None,
        planes: Any = None,
        fused_modconv: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Teacher ws [N, num_ws, w_dim] and rendering camera c [N, 25] -> ``image`` [N, 3, H, W],
        ``image_raw`` [N, 3, r, r], ``image_depth`` [N, 1, r, r], ``feature_image`` [N, C, r, r].

        The teacher's arguments are accepted: ``perturb`` and ``generator`` do nothing (no ray
        sampling), ``neural_rendering_resolution`` must be None or the student's own, ``planes``
        must be None, and ``branch`` must be "2d" (the student's only branch).
        """
        if branch not in STUDENT_BRANCHES:
            raise ValueError(f"branch: {branch!r} is not available, {NO_3D} (the student's branch is '2d')")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode: expected one of {NOISE_MODES}, got {noise_mode!r}")
        own = self.config.neural_rendering_resolution
        if neural_rendering_resolution not in (None, own):
            raise ValueError(
                f"neural_rendering_resolution: a student renders its features at {own} only, "
                f"got {neural_rendering_resolution!r}"
            )
        if planes is not None:
            raise ValueError(f"planes: {NO_3D}")
        fused = (not self.training) if fused_modconv is None else bool(fused_modconv)
        out = self.feature_synthesis(self.student_ws(ws, c), noise_mode=noise_mode, fused_modconv=fused)
        out = out * self.output_gain[:, None, None] + self.output_bias[:, None, None]
        channels = self.config.feature_channels
        features, depth = out[:, :channels], out[:, channels:]
        rgb = features[:, :3]
        image = self.superresolution(rgb, features, ws, fused_modconv=fused)
        return {"image": image, "image_raw": rgb, "image_depth": depth, "feature_image": features}

    def forward(
        self,
        z: Tensor,
        c: Tensor,
        branch: str = "2d",
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        perturb: bool | None = None,
        neural_rendering_resolution: int | None = None,
        update_emas: bool = False,
        fused_modconv: bool | None = None,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """z [N, z_dim], camera c [N, 25] (conditioning and rendering camera) -> images, as the teacher."""
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, labels=labels
        )
        return self.synthesis(
            ws,
            c,
            branch=branch,
            noise_mode=noise_mode,
            neural_rendering_resolution=neural_rendering_resolution,
            fused_modconv=fused_modconv,
        )

    # ------------------------------------------------------------------ no 3D representation

    def planes(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(NO_3D)

    def render(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(NO_3D)

    def render_patch(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(NO_3D)

    def render_scaled_patch(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(NO_3D)

    def sample_density(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(NO_3D)

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"student of a {cfg.teacher_branch}-branch teacher, img_resolution={self.img_resolution}, "
            f"features {cfg.feature_channels}+depth at {cfg.neural_rendering_resolution}, "
            f"superresolution={cfg.superresolution}"
        )


@torch.no_grad()
def teacher_targets(
    teacher: TriplaneGenerator, ws: Tensor, c: Tensor, branch: str, resolution: int, chunk: int = 4
) -> dict[str, Tensor]:
    """What a student of ``teacher``'s ``branch`` imitates, for ws [N, num_ws, w_dim] and cameras c [N, 25]:
    ``feature_image`` [N, C, r, r] (first 3 channels the LR image), ``image_depth`` [N, 1, r, r] and
    ``image`` [N, 3, R, R], rendered deterministically (no jitter, constant noise), ``chunk`` samples
    at a time, without gradients.

    "2d": the neural render at its rendering resolution (r) and the super-resolved image; "3d": the
    full field's features and depth rendered at ``resolution`` and its direct full-resolution image.
    """
    if branch not in TEACHER_BRANCHES:
        raise ValueError(f"branch: expected one of {TEACHER_BRANCHES}, got {branch!r}")
    parts = []
    for ws_i, c_i in zip(ws.split(chunk), c.split(chunk)):
        if branch == "2d":
            out = teacher.synthesis(ws_i, c_i, branch="2d", noise_mode="const", perturb=False)
            features, depth, image = out["feature_image"], out["image_depth"], out["image"]
        else:
            planes = teacher.planes(ws_i, noise_mode="const")
            features, depth = teacher.render(planes, c_i, resolution, perturb=False)
            out = teacher.synthesis(ws_i, c_i, branch="3d", noise_mode="const", perturb=False, planes=planes)
            image = out["image"]
        parts.append((features, depth, image))
    features, depth, image = (torch.cat(tensors) for tensors in zip(*parts))
    return {"feature_image": features, "image_raw": features[:, :3], "image_depth": depth, "image": image}


def student_from_teacher(
    teacher: TriplaneGenerator,
    teacher_branch: str | None = None,
    cameras: Tensor | None = None,
    samples: int = 1024,
    renders: int = 16,
    seed: int = 0,
    **overrides: Any,
) -> StudentGenerator:
    """A fresh student of ``teacher`` (see ``student_config``): the teacher's mapping network copied,
    its statistics measured (``set_statistics``: ``samples`` teacher ws, z ~ N(0, I) from ``seed``,
    conditioned and rendered at ``cameras`` [K, 25] drawn with replacement, default FFHQ-like
    poses; the first ``renders`` of them rendered), and, for a 2D-branch teacher, its
    super-resolution copied as the initialisation."""
    if not isinstance(teacher, TriplaneGenerator):
        raise ValueError(f"teacher: expected a TriplaneGenerator, got {type(teacher).__name__}")
    config = student_config(teacher.config, teacher_branch, **overrides)
    device = teacher.dataset_label_std.device
    student = StudentGenerator(config).to(device)
    student.teacher_mapping.load_state_dict(teacher.backbone.mapping.state_dict())
    student.dataset_label_std.copy_(teacher.dataset_label_std)
    if config.teacher_branch == "2d":
        student.superresolution.load_state_dict(teacher.superresolution.state_dict())
    rng = torch.Generator().manual_seed(seed)
    if cameras is None:
        cameras = sample_labels(PRESETS["ffhq"], samples, generator=rng)
    c = cameras[torch.randint(cameras.shape[0], (samples,), generator=rng)].to(device)
    z = torch.randn([samples, teacher.z_dim], generator=rng).to(device)
    labels = None
    if teacher.config.class_dim:
        classes = torch.randint(teacher.config.class_dim, (samples,), generator=rng).to(device)
        labels = nn.functional.one_hot(classes, teacher.config.class_dim).float()
    with torch.no_grad():
        ws = teacher.mapping(z, c, labels=labels)
    n = min(renders, samples)
    targets = teacher_targets(
        teacher, ws[:n], c[:n], config.teacher_branch, config.neural_rendering_resolution
    )
    student.set_statistics(ws, c, targets["feature_image"], targets["image_depth"])
    return student
