"""Make docs/images/viewer.png: ``mimic3d view`` in headless chromium (the test suite's browser driver).

usage: python docs/images/viewer_screenshot.py CHECKPOINT [OUT.png] [--seed N] [--branch both] [--show image]
CHECKPOINT is anything ``mimic3d.load`` reads, or ``random:PRESET`` for a randomly initialised
generator of a preset (e.g. ``random:tiny-mimic3d``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import PIL.Image
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import HeadlessBrowser, find_chromium  # noqa: E402

from mimic3d.checkpoints.load import load  # noqa: E402
from mimic3d.models import TriplaneGenerator, generator_preset  # noqa: E402
from mimic3d.tools.viewpoints import orbit_labels  # noqa: E402
from mimic3d.viewer.app import Viewer  # noqa: E402
from mimic3d.viewer.frames import ViewSettings  # noqa: E402

WIDTH, HEIGHT = 1280, 640


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint")
    parser.add_argument("out", nargs="?", default=str(ROOT / "docs/images/viewer.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--branch", default="both")
    parser.add_argument("--show", default="image")
    parser.add_argument("--resolution", type=int, default=128, help="3D branch size (default: 128)")
    args = parser.parse_args()
    if args.checkpoint.startswith("random:"):
        torch.manual_seed(0)
        G = TriplaneGenerator(generator_preset(args.checkpoint[7:])).eval().requires_grad_(False)
    else:
        G = load(args.checkpoint)
    settings = ViewSettings(seed=args.seed, branch=args.branch, show=args.show, resolution_3d=args.resolution)
    viewer = Viewer(G, port=0, outdir=ROOT / "out", settings=settings)
    browser = HeadlessBrowser(find_chromium(), WIDTH, HEIGHT + 200)
    try:
        metrics = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
        browser.send("Emulation.setDeviceMetricsOverride", metrics)
        browser.navigate(viewer.url)
        while not viewer.clients():
            time.sleep(0.2)
        view = viewer.clients()[0]
        # A little off the frontal camera, so that the 3D shape shows.
        viewer.set_camera(
            view.client, orbit_labels([math.pi / 2 + 0.35], math.pi / 2 - 0.12, viewer.preset)[0]
        )
        time.sleep(2)
        view.worker.wait_idle()
        time.sleep(2)
        # Dismiss the headless browser's "software WebGL" notice.
        browser.evaluate(
            "document.querySelectorAll('button.mantine-CloseButton-root').forEach(b => b.click())"
        )
        time.sleep(1.5)
        PIL.Image.fromarray(browser.screenshot()).save(args.out, optimize=True)
        print(f"{args.out}: frame {view.frame.panels[0].shape[:2]} in {view.frame.seconds:.2f} s")
    finally:
        browser.close()
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
