"""Procedural cars seen by ShapeNet-like cameras (EG3D's cars: radius 1.7, focal 1.7074).

A car is a rounded-box body with wheel arches, a cabin cut by sloped windshield and rear-window
planes, four rounded-cylinder wheels and an optional spoiler. Body types (sedan, hatchback,
SUV, sports) come from continuous proportions; materials are flake paint with door seams and
optional stripes, glass with pillars reflecting a sky gradient, lights, grille, black trim,
treaded tyres and spoked rims. The camera covers all 360 degrees of yaw over the upper
hemisphere; the background is white like ShapeNet renders.
"""

from __future__ import annotations

import numpy as np
import torch

from mimic3d.camera import PRESETS
from mimic3d.data.synth.kind import Named, ObjectKind, SampledObject, Vec3
from mimic3d.data.synth.noise import fbm, value_noise
from mimic3d.data.synth.params import ParamLayout
from mimic3d.data.synth.primitives import cylinder_x, plane, rounded_box, smooth_union

Tensor = torch.Tensor

PAINTS = np.array(
    [
        [0.92, 0.92, 0.90],
        [0.65, 0.66, 0.68],
        [0.08, 0.08, 0.09],
        [0.70, 0.06, 0.05],
        [0.08, 0.20, 0.55],
        [0.30, 0.31, 0.33],
        [0.90, 0.72, 0.10],
        [0.10, 0.35, 0.18],
        [0.45, 0.10, 0.12],
        [0.55, 0.75, 0.85],
    ]
)
BODY, CABIN, WHEEL, SPOILER = range(4)
GROUND = -0.2
FAR = 10.0


def _slope_plane(y0: float, z0: float, y1: float, z1: float, forward: bool) -> list[float]:
    """Plane through two points of the yz profile, normal pointing up and out (front or back)."""
    dy, dz = y1 - y0, z1 - z0
    normal = np.array([0.0, abs(dz), dy if forward else -dy])
    normal /= np.linalg.norm(normal)
    return [*normal, float(normal @ np.array([0.0, y0, z0]))]


class Cars(ObjectKind):
    name = "cars"
    preset = PRESETS["shapenet"]
    bound_center = (0.0, 0.0, 0.0)
    bound_radius = 0.6
    occlusion_scale = 0.02
    yaw_std, pitch_std = preset.yaw_std, preset.pitch_std
    geometry = ParamLayout(
        {
            "body": 7,
            "cabin": 7,
            "windshield": 4,
            "rear_window": 4,
            "wheels": 7,
            "arch": 1,
            "spoiler": 7,
            "blend": 1,
        }
    )
    appearance = ParamLayout(
        {
            "light": 3,
            "paint": 3,
            "roof": 3,
            "stripe": 3,
            "stripe_width": 1,
            "rim": 3,
            "spokes": 1,
            "seam": 2,
            "dirt": 1,
            "offset": 3,
        }
    )

    def sample(self, rng: np.random.Generator) -> SampledObject:
        body_type = rng.choice(4, p=[0.35, 0.25, 0.25, 0.15])  # sedan, hatchback, SUV, sports
        half_length = rng.uniform(0.38, 0.46)
        half_width = rng.uniform(0.17, 0.2) + (0.01 if body_type == 3 else 0.0)
        wheel_r = rng.uniform(0.068, 0.08) + (0.018 if body_type == 2 else 0.0)
        clearance = rng.uniform(0.025, 0.04) + (0.03 if body_type == 2 else 0.0)
        body_half_h = rng.uniform(0.055, 0.075) + (0.02 if body_type == 2 else -0.008 * (body_type == 3))
        body_y = GROUND + clearance + body_half_h + 0.02
        body_top = body_y + body_half_h
        cabin_half_h = rng.uniform(0.055, 0.075) + (0.015 if body_type == 2 else -0.015 * (body_type == 3))
        cabin_top = body_top - 0.02 + 2 * cabin_half_h
        cabin_half_l = half_length * (
            rng.uniform(0.5, 0.62) if body_type in (0, 3) else rng.uniform(0.65, 0.75)
        )
        cabin_z = -half_length * (rng.uniform(0.02, 0.12) if body_type in (0, 3) else rng.uniform(0.2, 0.28))
        cabin_half_w = half_width * rng.uniform(0.8, 0.9)
        front_slope = rng.uniform(0.09, 0.16) + (0.04 if body_type == 3 else 0.0)
        rear_slope = rng.uniform(0.05, 0.13) if body_type in (0, 3) else rng.uniform(0.01, 0.04)
        front_z, rear_z = cabin_z + cabin_half_l, cabin_z - cabin_half_l
        wheel_x = half_width - rng.uniform(0.03, 0.04)
        wheel_y = GROUND + wheel_r
        wheel_z = half_length * rng.uniform(0.6, 0.7)
        spoiler = rng.uniform() < (0.7 if body_type == 3 else 0.1)
        geometry = {
            "body": [0.0, body_y, 0.0, half_width, body_half_h, half_length, rng.uniform(0.035, 0.055)],
            "cabin": [
                0.0,
                body_top - 0.02 + cabin_half_h,
                cabin_z,
                cabin_half_w,
                cabin_half_h,
                cabin_half_l,
                rng.uniform(0.025, 0.045),
            ],
            "windshield": _slope_plane(body_top, front_z, cabin_top, front_z - front_slope, forward=True),
            "rear_window": _slope_plane(body_top, rear_z, cabin_top, rear_z + rear_slope, forward=False),
            "wheels": [
                wheel_x,
                wheel_y,
                wheel_z,
                -wheel_z * rng.uniform(0.95, 1.05),
                wheel_r,
                rng.uniform(0.028, 0.038),
                0.012,
            ],
            "arch": wheel_r + rng.uniform(0.008, 0.016),
            "spoiler": (
                [0.0, body_top + 0.012, -half_length + 0.04, half_width * 0.9, 0.022, 0.028, 0.008]
                if spoiler
                else [0.0, FAR, 0.0, 0.01, 0.01, 0.01, 0.001]
            ),
            "blend": rng.uniform(0.015, 0.03),
        }
        paint = PAINTS[rng.integers(len(PAINTS))] * rng.uniform(0.9, 1.1, 3)
        if rng.uniform() < 0.15:
            paint = rng.uniform(0.05, 0.95, 3)
        roof = PAINTS[2] if rng.uniform() < 0.2 else paint
        light = np.array([rng.uniform(-1, 1), rng.uniform(0.6, 1.5), rng.uniform(-1, 1)])
        appearance = {
            "light": light / np.linalg.norm(light),
            "paint": np.clip(paint, 0, 1),
            "roof": np.clip(roof, 0, 1),
            "stripe": PAINTS[rng.integers(len(PAINTS))],
            "stripe_width": rng.uniform(0.02, 0.05) if rng.uniform() < 0.25 else 0.0,
            "rim": rng.uniform(0.35, 0.85) * np.ones(3),
            "spokes": rng.integers(4, 9),
            "seam": [rng.uniform(0.0, 0.08), rng.uniform(-0.2, -0.08)],
            "dirt": rng.uniform(0.0, 0.5),
            "offset": rng.uniform(-50, 50, 3),
        }
        yaw, pitch = self.sample_pose(rng)
        return SampledObject(self.geometry.pack(geometry), self.appearance.pack(appearance), yaw, pitch)

    def bound_distance(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        # Box around the largest car ``sample`` can draw (half width 0.21, length 0.46, roof 0.24).
        return rounded_box(x, y, z, 0.0, 0.025, 0.0, 0.24, 0.24, 0.48, 0.0)

    def part_distances(self, x: Tensor, y: Tensor, z: Tensor, g: Named) -> tuple[Tensor, ...]:
        ax = x.abs()
        body = rounded_box(x, y, z, *g["body"])
        wheel_x, wheel_y, front_z, rear_z, radius, half_width, rounding = g["wheels"]
        # Wheel arches: cut only the outer skin of the body so the car is not hollowed through.
        arch = (
            torch.minimum(
                torch.sqrt((y - wheel_y) ** 2 + (z - front_z) ** 2),
                torch.sqrt((y - wheel_y) ** 2 + (z - rear_z) ** 2),
            )
            - g["arch"]
        )
        arch = torch.maximum(arch, (g["body"][3] - 0.07) - ax)
        body = torch.maximum(body, -arch)
        cabin = rounded_box(x, y, z, *g["cabin"])
        cabin = torch.maximum(
            cabin, torch.maximum(plane(x, y, z, *g["windshield"]), plane(x, y, z, *g["rear_window"]))
        )
        wheels = torch.minimum(
            cylinder_x(ax, y, z, wheel_x, wheel_y, front_z, radius, half_width, rounding),
            cylinder_x(ax, y, z, wheel_x, wheel_y, rear_z, radius, half_width, rounding),
        )
        spoiler = rounded_box(x, y, z, *g["spoiler"])
        return body, cabin, wheels, spoiler

    def distance(self, x: Tensor, y: Tensor, z: Tensor, g: Named) -> Tensor:
        body, cabin, wheels, spoiler = self.part_distances(x, y, z, g)
        return torch.minimum(torch.minimum(smooth_union(body, cabin, g["blend"]), wheels), spoiler)

    def surface_colour(
        self, points: Vec3, normal: Vec3, part: Tensor, g: Named, a: Named
    ) -> tuple[Tensor, Tensor]:
        x, y, z = points
        nx, ny, nz = normal
        px, py, pz = self.texture_points(x, y, z, a)
        ax = x.abs()
        _, body_y, _, half_width, body_half_h, half_length, _ = g["body"]
        body_top, body_bottom = body_y + body_half_h, body_y - body_half_h

        # Paint: metallic flakes, dirt towards the bottom, stripes over the top, door seams.
        flakes = 0.95 + 0.1 * value_noise(px * 700.0, py * 700.0, pz * 700.0)
        paint = torch.stack(a["paint"]) * flakes
        stripe = (ax < a["stripe_width"]) & (ny > 0.3)
        paint = torch.where(stripe, torch.stack(a["stripe"]) * flakes, paint)
        grime = fbm(px, py, pz, 30.0, 2) * a["dirt"] * (1.0 - (y - body_bottom) / 0.08).clamp(0.0, 1.0)
        paint = paint * (1.0 - grime) + torch.tensor([0.35, 0.3, 0.25])[:, None] * grime
        front_seam, rear_seam = a["seam"]
        seam = (
            (((z - front_seam).abs() < 0.003) | ((z - rear_seam).abs() < 0.003))
            & (nx.abs() > 0.7)
            & (y > body_bottom + 0.015)
        )
        paint = paint * (1.0 - 0.6 * seam)

        # Body details: black lower trim, lights and grille on the front and back faces.
        body = paint
        trim = y < body_bottom + 0.018
        body = torch.where(trim, torch.full_like(body, 0.07), body)
        front, back = nz > 0.6, nz < -0.6
        lamp_band = (
            (y > body_top - 0.05)
            & (y < body_top - 0.015)
            & (ax > half_width * 0.55)
            & (ax < half_width * 0.92)
        )
        body = torch.where(front & lamp_band, torch.tensor([0.97, 0.96, 0.88])[:, None], body)
        body = torch.where(back & lamp_band, torch.tensor([0.75, 0.05, 0.04])[:, None], body)
        grille = front & (ax < half_width * 0.45) & (y > body_y - 0.025) & (y < body_top - 0.02)
        mesh = 0.06 + 0.1 * (torch.sin(x * 400.0) * torch.sin(y * 400.0) > 0)
        body = torch.where(grille, mesh.expand(3, -1), body)
        colour = body
        specular = torch.where(trim | grille, torch.full_like(x, 0.05), torch.full_like(x, 0.45))

        # Cabin: glass in the window band (pillars and frames painted), roof colour above it.
        _, cabin_y, cabin_z, cabin_half_w, cabin_half_h, _, _ = g["cabin"]
        cabin_top = cabin_y + cabin_half_h
        band = (y > body_top + 0.008) & (y < cabin_top - 0.018)
        side = nx.abs() > 0.6
        near_slope = (plane(x, y, z, *g["windshield"]) > -0.025) | (
            plane(x, y, z, *g["rear_window"]) > -0.025
        )
        pillar = side & (((z - cabin_z).abs() < 0.012) | near_slope)
        frame = ~side & (ax > cabin_half_w - 0.02)
        glass = band & ~pillar & ~frame
        sky = 0.1 + 0.5 * ny.clamp(0.0, 1.0)
        glass_rgb = torch.stack([0.06 + 0.8 * sky, 0.08 + 0.9 * sky, 0.11 + sky])
        cabin = torch.where(
            glass, glass_rgb, torch.where(y >= cabin_top - 0.018, torch.stack(a["roof"]) * flakes, paint)
        )
        colour = torch.where(part == CABIN, cabin, colour)
        specular = torch.where(part == CABIN, torch.where(glass, 0.9, 0.45), specular)

        # Wheels: treaded rubber, spoked rims on the outer face.
        wheel_x, wheel_y, front_z, rear_z, radius = g["wheels"][:5]
        hub_z = torch.where((z - front_z).abs() < (z - rear_z).abs(), front_z, rear_z)
        radial = torch.sqrt((y - wheel_y) ** 2 + (z - hub_z) ** 2) / radius
        spin = torch.atan2(y - wheel_y, z - hub_z)
        tread = 0.05 + 0.04 * (torch.sin(spin * 40.0) > 0)
        rim_face = (radial < 0.62) & (ax > wheel_x)
        spoke = (torch.cos(spin * a["spokes"]) > -0.2) | (radial < 0.2)
        rim = torch.stack(a["rim"]) * torch.where(spoke, 1.0, 0.25)
        wheel = torch.where(rim_face, rim, tread.expand(3, -1))
        colour = torch.where(part == WHEEL, wheel, colour)
        specular = torch.where(part == WHEEL, torch.where(rim_face, 0.6, 0.03), specular)

        colour = torch.where(part == SPOILER, paint, colour)
        return colour.clamp(0.0, 1.0), specular

    def background(self, u: Tensor, v: Tensor, a: Named) -> Tensor:
        return torch.ones(3, a["offset"][0].shape[0], u.shape[0])
