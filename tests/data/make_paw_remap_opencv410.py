"""Regenerate ``paw_remap_opencv410.npz``: cv2.remap (float maps, INTER_LINEAR, constant 0 border)
outputs of OpenCV 4.10, the fixed-point algorithm OpenFace 2.2's PAW::Warp ran with (OpenCV >= 4.11
samples differently), on a real face of OpenFace's default.wmv.  Run with an OpenCV 4.10 Python,
e.g.::

    python -m venv /tmp/cv410 && /tmp/cv410/bin/pip install opencv-python-headless==4.10.0.84 "numpy<2.3"
    /tmp/cv410/bin/python tests/data/make_paw_remap_opencv410.py ../shared/media/default.wmv

Maps are 60 x 60 (the validator's warp size): affine maps onto the face as the PAW's triangles give
them, with -1 outside a face-shaped disc (WarpRegion's value outside the mask), positions past every
image border, and positions on exact 1/64-pixel ties of the 1/32-pixel rounding.
"""
import sys
from pathlib import Path

import cv2
import numpy as np

SIZE = 60


def main(video):
    assert cv2.__version__.startswith("4.10"), cv2.__version__
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    assert ok
    face = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[150:310, 240:400])  # 160x160
    image = face.astype(np.float32)
    rng = np.random.default_rng(20261125)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    inside = (xs - 29.5) ** 2 / 30**2 + (ys - 29.5) ** 2 / 32**2 <= 1
    maps_x, maps_y = [], []
    for k in range(8):
        s = rng.uniform(1.5, 3.0)
        theta = rng.uniform(-0.4, 0.4)
        a, b = s * np.cos(theta), s * np.sin(theta)
        centre = np.array([80.0, 80.0]) + (rng.uniform(-120, 120, 2) if k >= 6 else rng.uniform(-10, 10, 2))
        mx = (a * (xs - 29.5) - b * (ys - 29.5) + centre[0]).astype(np.float32)
        my = (b * (xs - 29.5) + a * (ys - 29.5) + centre[1]).astype(np.float32)
        if k in (2, 3):  # ties: positions exactly between two 1/32 steps
            mx = (np.floor(mx * 32) + 0.5).astype(np.float32) / np.float32(32)
            my = (np.floor(my * 32) + 0.5).astype(np.float32) / np.float32(32)
        maps_x.append(np.where(inside, mx, np.float32(-1)))
        maps_y.append(np.where(inside, my, np.float32(-1)))
    maps_x, maps_y = np.stack(maps_x), np.stack(maps_y)
    out = {
        "face": face,
        "map_x": maps_x,
        "map_y": maps_y,
        "warped": np.stack([cv2.remap(image, mx, my, cv2.INTER_LINEAR) for mx, my in zip(maps_x, maps_y)]),
    }
    target = Path(__file__).with_name("paw_remap_opencv410.npz")
    np.savez_compressed(target, **out)
    print(target, target.stat().st_size, "bytes")


if __name__ == "__main__":
    main(sys.argv[1])
