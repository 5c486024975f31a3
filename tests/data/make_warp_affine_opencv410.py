"""Regenerate ``warp_affine_opencv410.npz``: cv2.warpAffine outputs of OpenCV 4.10 (the fixed-point
algorithm OpenFace 2.2 ran with; OpenCV >= 4.11 computes warps differently), on real frames of
OpenFace's default.wmv.  Run with an OpenCV 4.10 Python, e.g.::

    python -m venv /tmp/cv410 && /tmp/cv410/bin/pip install opencv-python-headless==4.10.0.84 "numpy<2.3"
    /tmp/cv410/bin/python tests/data/make_warp_affine_opencv410.py ../shared/media/default.wmv

The inputs are stored with the outputs, so the test does not depend on how a video decodes.
"""
import sys
from pathlib import Path

import cv2
import numpy as np

FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP


def similarity(rng, scale, centre, jitter):
    """dst->src map: rotation + scale around a source centre, as Patch_experts.cpp builds them."""
    s = rng.uniform(*scale)
    theta = rng.uniform(-0.8, 0.8)
    a, b = s * np.cos(theta), s * np.sin(theta)
    cx, cy = centre + rng.uniform(-jitter, jitter, 2)
    return np.array([[a, -b, cx], [b, a, cy]])


def main(video):
    assert cv2.__version__.startswith("4.10"), cv2.__version__
    cap = cv2.VideoCapture(str(video))
    frames = []
    for _ in range(101):
        ok, frame = cap.read()
        assert ok
        frames.append(frame)
    gray = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)
    bgr = np.ascontiguousarray(frames[100][140:340, 220:420])  # the face, 200x200
    rng = np.random.default_rng(20261124)
    # Areas of interest around the face and past every image border (scale ~1, like Patch_experts).
    patch = np.stack([similarity(rng, (0.4, 2.2), np.array([320.0, 240.0]), 360.0) for _ in range(40)])
    patch_f32 = patch.astype(np.float32)  # OpenFace passes float matrices
    # Aligned faces from the BGR crop (Face_utils.cpp AlignFaceMask: 112x112).
    align = np.stack([similarity(rng, (0.6, 1.6), np.array([40.0, 40.0]), 60.0) for _ in range(4)])
    gray_f32 = gray.astype(np.float32) * np.float32(0.731) + np.float32(0.1234)
    out = {
        "gray": gray,
        "bgr": bgr,
        "patch_matrices": patch,
        "patch_matrices_f32": patch_f32,
        "align_matrices": align,
        "patch_u8": np.stack([cv2.warpAffine(gray, m, (33, 27), flags=FLAGS) for m in patch]),
        "patch_u8_border": np.stack(
            [cv2.warpAffine(gray, m, (33, 27), flags=FLAGS, borderValue=77) for m in patch]
        ),
        "patch_f32": np.stack([cv2.warpAffine(gray_f32, m, (33, 27), flags=FLAGS) for m in patch_f32]),
        "align_bgr": np.stack([cv2.warpAffine(bgr, m, (112, 112), flags=FLAGS) for m in align]),
    }
    target = Path(__file__).with_name("warp_affine_opencv410.npz")
    np.savez_compressed(target, **out)
    print(target, target.stat().st_size, "bytes")


if __name__ == "__main__":
    main(sys.argv[1])
