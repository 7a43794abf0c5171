"""Procedural human-like heads seen by FFHQ-like cameras.

World units follow EG3D's FFHQ setup: the head is centred near the origin facing +z, the camera
orbits at radius 2.7 looking at (0, 0, 0.2) with focal 4.2647, so the face fills the middle of
the image like an aligned FFHQ crop. Every head is a smooth union of ellipsoids (cranium, jaw,
brow, nose, ears), carved eye sockets with eyeballs, lips, a neck and shoulders, and one of
four hair styles (bald, short cap, long, bun), with textured skin, hair, irises and clothes.
"""

from __future__ import annotations

import numpy as np
import torch

from mimic3d.camera import PRESETS
from mimic3d.data.synth.kind import Named, ObjectKind, SampledObject, Vec3
from mimic3d.data.synth.noise import fbm, spots, value_noise
from mimic3d.data.synth.params import ParamLayout
from mimic3d.data.synth.primitives import (
    capsule,
    ellipsoid,
    plane,
    rounded_box,
    smooth_subtract,
    smooth_union,
    sphere,
)

Tensor = torch.Tensor

SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.89, 0.67, 0.52],
        [0.78, 0.56, 0.40],
        [0.63, 0.43, 0.28],
        [0.42, 0.27, 0.17],
        [0.30, 0.19, 0.12],
    ]
)
HAIR_COLOURS = np.array(
    [
        [0.06, 0.05, 0.05],
        [0.23, 0.14, 0.08],
        [0.42, 0.27, 0.14],
        [0.85, 0.70, 0.45],
        [0.55, 0.22, 0.10],
        [0.68, 0.67, 0.66],
    ]
)
IRIS_COLOURS = np.array(
    [[0.25, 0.45, 0.70], [0.30, 0.50, 0.30], [0.35, 0.20, 0.10], [0.50, 0.40, 0.20], [0.15, 0.08, 0.05]]
)
# Material parts, in the order of ``part_distances``.
SKIN, EYE, LIPS, HAIR, SHIRT = range(5)
FAR = 10.0  # centre of disabled parts: far outside the bounding sphere


def _ellipsoid(centre: list[float], radii: np.ndarray | list[float]) -> list[float]:
    """Centre and inverse semi-axes, the parameters of ``primitives.ellipsoid``."""
    return [*centre, *(1.0 / np.asarray(radii))]


def _palette(rng: np.random.Generator, colours: np.ndarray, jitter: float) -> np.ndarray:
    """A random colour on the polyline through ``colours``, jittered per channel."""
    position = rng.uniform(0, len(colours) - 1)
    low = int(position)
    high = min(low + 1, len(colours) - 1)
    colour = colours[low] + (colours[high] - colours[low]) * (position - low)
    return np.clip(colour * rng.uniform(1 - jitter, 1 + jitter, 3), 0, 1)


class Heads(ObjectKind):
    name = "heads"
    preset = PRESETS["ffhq"]
    bound_center = (0.0, -0.08, -0.02)
    bound_radius = 0.56
    occlusion_scale = 0.012
    yaw_std, pitch_std = 0.3, 0.2
    geometry = ParamLayout(
        {
            "head": 6,
            "jaw": 6,
            "brow": 6,
            "nose": 6,
            "tip": 4,
            "socket": 4,
            "eye": 4,
            "lids": 2,
            "ear": 6,
            "lips": 6,
            "neck": 7,
            "torso": 6,
            "hair_cap": 6,
            "hairline": 4,
            "hair_long": 6,
            "hair_long_cut": 1,
            "bun": 4,
            "hair_wave": 3,
            "blend": 2,
        }
    )
    appearance = ParamLayout(
        {
            "light": 3,
            "skin": 3,
            "skin_noise": 1,
            "freckles": 1,
            "blush": 1,
            "hair": 3,
            "hair_freq": 1,
            "iris": 3,
            "gaze": 2,
            "lips_colour": 3,
            "brow_width": 1,
            "beard": 1,
            "shirt": 3,
            "shirt2": 3,
            "pattern": 1,
            "pattern_freq": 1,
            "bg_top": 3,
            "bg_bottom": 3,
            "offset": 3,
        }
    )

    def sample(self, rng: np.random.Generator) -> SampledObject:
        s = rng.uniform(0.93, 1.07)
        width = rng.uniform(0.92, 1.08)

        def jit(scale: float = 0.06) -> float:
            return rng.uniform(1 - scale, 1 + scale)

        head_r = np.array([0.158 * width * jit(), 0.205 * jit(), 0.19 * jit()]) * s
        jaw_r = np.array([0.118 * width * jit(0.1), 0.11 * jit(0.1), 0.13 * jit()]) * s
        eye_y, eye_x = 0.02 * s, 0.056 * s * jit(0.08)
        eye_r = 0.026 * s
        lips_y = -0.112 * s * jit(0.05)
        style = rng.choice(4, p=[0.1, 0.4, 0.35, 0.15])  # bald, short, long, bun
        thickness = 0.0 if style == 0 else rng.uniform(0.012, 0.035)
        cap_r = head_r + np.array([thickness, thickness * 1.3, thickness])
        front = rng.uniform(0.085, 0.13)  # hairline height at the forehead
        normal = np.array([0.0, 0.32, -0.22 * rng.uniform(0.7, 1.3)])
        normal /= np.linalg.norm(normal)
        anchor = np.array([0.0, front, 0.17 * s])
        geometry = {
            "head": _ellipsoid([0.0, 0.0, 0.0], head_r),
            "jaw": _ellipsoid([0.0, -0.1 * s, 0.035 * s], jaw_r),
            "brow": _ellipsoid([0.0, 0.058 * s, 0.138 * s], np.array([0.11, 0.028, 0.05]) * s * jit()),
            "nose": _ellipsoid([0.0, -0.03 * s, 0.185 * s], np.array([0.021, 0.05, 0.035]) * s * jit(0.15)),
            "tip": [0.0, -0.062 * s, (0.208 + rng.uniform(-0.008, 0.012)) * s, 0.021 * s * jit(0.15)],
            "socket": [eye_x, eye_y, 0.19 * s, 0.04 * s],
            "eye": [eye_x, eye_y, 0.138 * s, eye_r],
            "lids": [eye_y + rng.uniform(-0.002, 0.004) * s, rng.uniform(0.008, 0.013) * s],
            "ear": _ellipsoid(
                [0.152 * s * width, 0.0, -0.01 * s], np.array([0.022, 0.05, 0.032]) * s * jit(0.15)
            ),
            "lips": _ellipsoid(
                [0.0, lips_y, 0.167 * s], np.array([0.044 * jit(0.15), 0.016 * jit(0.2), 0.022]) * s
            ),
            "neck": [0.0, -0.14 * s, -0.03, 0.0, -0.42, -0.045, 0.072 * width * jit(0.1)],
            "torso": _ellipsoid([0.0, -0.445, -0.06], np.array([0.34 * jit(0.1), 0.12, 0.16])),
            "hair_cap": _ellipsoid([0.0, 0.006, -0.004], cap_r),
            "hairline": [*normal, float(normal @ anchor)],
            "hair_long": (
                _ellipsoid([0.0, -0.1, -0.055], [0.195 * width, 0.27 * jit(0.1), 0.165])
                if style == 2
                else _ellipsoid([0.0, FAR, 0.0], [0.01, 0.01, 0.01])
            ),
            "hair_long_cut": rng.uniform(0.0, 0.06),
            "bun": [0.0, 0.15, -0.16, 0.07 * jit(0.15)] if style == 3 else [0.0, FAR, 0.0, 0.01],
            # Wavy hairline (fringe) amplitude and frequency, and the height of locks on the surface.
            "hair_wave": [rng.uniform(0.0, 0.03), rng.uniform(25.0, 60.0), rng.uniform(0.002, 0.007)],
            "blend": [0.06 * s, 0.02 * s],
        }
        light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(0.1, 1.0), rng.uniform(0.5, 1.2)])
        hair = _palette(rng, HAIR_COLOURS, 0.08)
        if rng.uniform() < 0.06:  # dyed hair
            hair = rng.uniform(0.1, 0.9, 3)
        skin = _palette(rng, SKIN_TONES, 0.05)
        appearance = {
            "light": light / np.linalg.norm(light),
            "skin": skin,
            "skin_noise": rng.uniform(0.04, 0.12),
            "freckles": rng.uniform(0.0, 0.5) if rng.uniform() < 0.25 else 0.0,
            "blush": rng.uniform(0.0, 0.35),
            "hair": hair,
            "hair_freq": rng.uniform(30, 70),
            "iris": _palette(rng, IRIS_COLOURS, 0.1),
            "gaze": rng.normal(0.0, 0.1, 2),
            "lips_colour": np.clip(skin * np.array([1.0, 0.62, 0.62]) * rng.uniform(0.75, 1.0), 0, 1),
            "brow_width": rng.uniform(0.008, 0.014),
            "beard": rng.uniform(0.3, 0.9) if rng.uniform() < 0.2 else 0.0,
            "shirt": rng.uniform(0.05, 0.95, 3),
            "shirt2": rng.uniform(0.05, 0.95, 3),
            "pattern": rng.integers(0, 3),
            "pattern_freq": rng.uniform(60, 160),
            "bg_top": rng.uniform(0.2, 0.95, 3),
            "bg_bottom": rng.uniform(0.1, 0.9, 3),
            "offset": rng.uniform(-50, 50, 3),
        }
        yaw, pitch = self.sample_pose(rng)
        return SampledObject(self.geometry.pack(geometry), self.appearance.pack(appearance), yaw, pitch)

    def bound_distance(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        # A sphere around head and hair, a box around neck, long hair and shoulders (sized for the
        # largest parameters that ``sample`` can draw, plus a margin).
        head = sphere(x, y, z, 0.0, 0.01, 0.0, 0.31)
        body = rounded_box(x, y, z, 0.0, -0.335, -0.035, 0.395, 0.25, 0.21, 0.0)
        return torch.minimum(head, body)

    def part_distances(self, x: Tensor, y: Tensor, z: Tensor, g: Named) -> tuple[Tensor, ...]:
        ax = x.abs()
        k_face, k_feature = g["blend"]
        skin = smooth_union(ellipsoid(x, y, z, *g["head"]), ellipsoid(x, y, z, *g["jaw"]), k_face)
        skin = smooth_union(skin, ellipsoid(x, y, z, *g["brow"]), k_feature)
        nose = smooth_union(ellipsoid(x, y, z, *g["nose"]), sphere(x, y, z, *g["tip"]), k_feature * 0.8)
        skin = smooth_union(skin, nose, k_feature)
        skin = smooth_subtract(skin, sphere(ax, y, z, *g["socket"]), k_feature * 0.8)
        skin = smooth_union(skin, ellipsoid(ax, y, z, *g["ear"]), k_feature * 0.5)
        skin = smooth_union(skin, capsule(x, y, z, *g["neck"]), k_face)
        eye = sphere(ax, y, z, *g["eye"])
        # Eyelids: a shell just outside the eyeball, open in a horizontal band around the iris.
        centre, opening = g["lids"]
        lids = torch.maximum(eye - g["eye"][3] * 0.12, opening - (y - centre).abs())
        skin = smooth_union(skin, lids, k_feature * 0.25)
        lips = ellipsoid(x, y, z, *g["lips"])
        wave, frequency, locks = g["hair_wave"]
        # Even functions of x keep every head mirror-symmetric (textures aside).
        hairline = -plane(x, y, z, *g["hairline"]) + wave * torch.cos(frequency * x)
        bumps = locks * torch.cos(71.0 * x) * torch.sin(53.0 * y) * torch.sin(67.0 * z)
        hair = torch.maximum(ellipsoid(x, y, z, *g["hair_cap"]) - bumps, hairline)
        long_hair = torch.maximum(ellipsoid(x, y, z, *g["hair_long"]), z - g["hair_long_cut"])
        hair = torch.minimum(torch.minimum(hair, long_hair), sphere(x, y, z, *g["bun"]))
        shirt = ellipsoid(x, y, z, *g["torso"])
        return skin, eye, lips, hair, shirt

    def distance(self, x: Tensor, y: Tensor, z: Tensor, g: Named) -> Tensor:
        skin, eye, lips, hair, shirt = self.part_distances(x, y, z, g)
        face = smooth_union(skin, lips, g["blend"][1] * 0.5)
        return torch.minimum(torch.minimum(face, eye), torch.minimum(hair, shirt))

    def surface_colour(
        self, points: Vec3, normal: Vec3, part: Tensor, g: Named, a: Named
    ) -> tuple[Tensor, Tensor]:
        x, y, z = points
        px, py, pz = self.texture_points(x, y, z, a)
        ax = x.abs()
        colour = torch.zeros(3, x.shape[0])
        specular = torch.zeros_like(x)
        hair_rgb = torch.stack(a["hair"])

        # Skin: tone with pores and blotches, optional freckles, cheek blush, eyebrows, stubble.
        grain = fbm(px, py, pz, 90.0, 2) - 0.5
        blotch = fbm(px, py, pz, 9.0, 2) - 0.5
        shade = 1.0 + a["skin_noise"] * (grain + 1.5 * blotch)
        skin = torch.stack(a["skin"]) * shade
        freckle = spots(px, py, pz, 0.011, a["freckles"], 0.3) * (z > 0.05)
        skin = skin * (1.0 - 0.3 * freckle)
        cheek = torch.exp(-((ax - 0.085) ** 2 + (y + 0.045) ** 2) / 0.0012) * a["blush"] * (z > 0.05)
        skin = skin * (1.0 - cheek * torch.tensor([0.0, 0.35, 0.3])[:, None])
        eye_x, eye_y = g["eye"][0], g["eye"][1]
        arch = eye_y + 0.036 - 6.0 * (ax - eye_x) ** 2
        brow = ((y - arch).abs() < a["brow_width"]) & ((ax - eye_x).abs() < 0.042) & (z > 0.08)
        strands = 0.7 + 0.3 * value_noise(px * 400.0, py * 60.0, pz * 60.0)
        skin = torch.where(brow, hair_rgb * strands, skin)
        lips_y = g["lips"][1]
        chin = (y < lips_y + 0.012) & (z > 0.0) & (y > -0.26)
        stubble = spots(px, py, pz, 0.004, a["beard"], 0.45) * chin
        skin = skin * (1.0 - stubble) + hair_rgb * stubble
        colour = torch.where(part == SKIN, skin, colour)
        specular = torch.where(part == SKIN, torch.full_like(x, 0.06), specular)

        # Eyes: sclera, textured iris and pupil around the gaze direction.
        cx, cy, cz, radius = g["eye"]
        gx, gy = a["gaze"]
        ex, ey, ez = (ax - cx) / radius, (y - cy) / radius, (z - cz) / radius
        alignment = (ex * gx * torch.sign(x) + ey * gy + ez) / torch.sqrt(gx * gx + gy * gy + 1.0)
        angle = torch.arccos(alignment.clamp(-1.0, 1.0))
        fibres = 0.75 + 0.25 * value_noise(torch.atan2(ey, ex) * 12.0, angle * 20.0, pz * 3.0)
        eye = torch.tensor([0.86, 0.84, 0.80])[:, None].expand(3, x.shape[0])
        eye = torch.where(angle < 0.5, torch.stack(a["iris"]) * fibres, eye)
        eye = torch.where(angle < 0.2, torch.full_like(eye, 0.03), eye)
        colour = torch.where(part == EYE, eye, colour)
        specular = torch.where(part == EYE, torch.full_like(x, 0.6), specular)

        # Lips with a darker mouth line.
        lips = torch.stack(a["lips_colour"]) * (0.9 + 0.2 * fbm(px, py, pz, 120.0, 1))
        mouth = ((y - lips_y).abs() < 0.0035).float()
        lips = lips * (1.0 - 0.75 * mouth)
        colour = torch.where(part == LIPS, lips, colour)
        specular = torch.where(part == LIPS, torch.full_like(x, 0.2), specular)

        # Hair: strands running down from the crown, with clumps.
        around = torch.atan2(x, z + 0.05)
        flow = fbm(px, py, pz, 10.0, 2)
        strand = 0.5 + 0.5 * torch.sin(around * a["hair_freq"] + 14.0 * flow)
        fine = value_noise(around * 90.0, py * 8.0, pz * 8.0)
        clump = fbm(px, py * 0.3, pz, 25.0, 1)
        depth_in = (-plane(x, y, z, *g["hairline"]) / 0.03).clamp(0.0, 1.0)
        hair = hair_rgb * (0.45 + 0.2 * strand + 0.25 * fine + 0.3 * clump) * (0.8 + 0.2 * depth_in)
        colour = torch.where(part == HAIR, hair, colour)
        specular = torch.where(part == HAIR, 0.12 + 0.1 * strand, specular)

        # Clothes: plain, striped or dotted fabric with a weave.
        weave = 0.92 + 0.08 * value_noise(px * 300.0, py * 300.0, pz * 300.0)
        stripes = (torch.sin(y * a["pattern_freq"]) > 0.3).float()
        dots = spots(px, py, pz, 3.0 / a["pattern_freq"], 0.8, 0.3)
        pattern = a["pattern"]
        mix = torch.where(pattern == 1, stripes, torch.where(pattern == 2, dots, torch.zeros_like(x)))
        shirt = (torch.stack(a["shirt"]) * (1 - mix) + torch.stack(a["shirt2"]) * mix) * weave
        colour = torch.where(part == SHIRT, shirt, colour)
        return colour.clamp(0.0, 1.0), specular

    def background(self, u: Tensor, v: Tensor, a: Named) -> Tensor:
        top, bottom = torch.stack(a["bg_top"]), torch.stack(a["bg_bottom"])  # [3, B]
        ox = a["offset"][0]
        blur = value_noise(u[None] * 3.0 + ox[:, None], v[None] * 3.0, ox[:, None] * 0.0)  # [B, R*R]
        t = (v[None] + 0.25 * (blur - 0.5)).clamp(0.0, 1.0)
        return top[:, :, None] * (1 - t) + bottom[:, :, None] * t
