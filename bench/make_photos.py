#!/usr/bin/python3
"""Writes a folder of generated JPEG photos, a subfolder per class, for bench/run.

Each image is 320x240: a smooth two-colour gradient, a few soft-edged ellipses
and a little sensor-like noise, saved at JPEG quality 90, so that decoding and
resizing cost what they cost on real photos of that size. Each class leans
towards its own hue and shape count, so training has something to learn.
The same --seed gives the same bytes.

  /usr/bin/python3 bench/make_photos.py --out DIR --classes 3 --per-class 100
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 320, 240


def make_photo(rng, class_index, classes):
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    hue = (class_index + rng.uniform(-0.25, 0.25)) / classes
    base = np.array([np.cos(2 * np.pi * (hue + k / 3)) * 0.35 + 0.5 for k in range(3)],
                    dtype=np.float32)
    other = rng.uniform(0.1, 0.9, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs / WIDTH + np.sin(angle) * ys / HEIGHT + 1) / 2
    image = base * (1 - ramp[..., None]) + other * ramp[..., None]
    for _ in range(2 + class_index % 4 + rng.integers(0, 3)):
        cx, cy = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)
        rx, ry = rng.uniform(15, 80), rng.uniform(15, 80)
        distance = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2
        alpha = np.clip(1.5 - distance, 0, 1)[..., None]  # a soft edge
        image = image * (1 - alpha) + rng.uniform(0, 1, 3).astype(np.float32) * alpha
    image += rng.normal(0, 0.03, image.shape).astype(np.float32)
    return Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8), "RGB")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.classes < 2 or args.per_class < 1:
        raise SystemExit("--classes must be at least 2 and --per-class at least 1")
    rng = np.random.default_rng(args.seed)
    for c in range(args.classes):
        folder = os.path.join(args.out, "class%d" % c)
        os.makedirs(folder, exist_ok=True)
        for i in range(args.per_class):
            make_photo(rng, c, args.classes).save(os.path.join(folder, "%04d.jpg" % i),
                                                  quality=90)


if __name__ == "__main__":
    main(sys.argv[1:])
