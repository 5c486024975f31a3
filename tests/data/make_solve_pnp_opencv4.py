"""Regenerate ``solve_pnp_opencv4.npz``: ``cv2.solvePnP`` (iterative, from a guess) as OpenCV 4.x computes it
(``cvFindExtrinsicCameraParams2``, the solver OpenFace's ``GetPose`` runs; OpenCV 5 rewrote it), on head-pose
problems built from OpenFace's own fits of default.wmv (its reference CSV: landmarks, PDM parameters).
Run from the repository root with an OpenCV 4.10 Python that can import gpuau, e.g.::

    python -m venv /tmp/cv410 && /tmp/cv410/bin/pip install opencv-python-headless==4.10.0.84 "numpy<2.3" pandas numba
    GPUAU_MODELS=../shared/models/openface-2.2.0 PYTHONPATH=. /tmp/cv410/bin/python \\
        tests/data/make_solve_pnp_opencv4.py ../shared/reference/openface-clnf/default.csv

The problems are stored with the results, so the test needs neither the CSV nor the PDM.
"""
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from gpuau.landmarks.pdm import PDM
from gpuau.video.source import camera_intrinsics


def guess(g, camera):
    """``GetPose``'s starting point: the PDM's rotation as an axis-angle vector, the weak-perspective translation."""
    fx, fy, cx, cy = camera
    z = fx / g[0]
    x = np.float32(float(g[4] - cx) * (1.0 / float(fx)) * float(z))
    y = np.float32(float(g[5] - cy) * (1.0 / float(fy)) * float(z))
    return g[1:4].copy(), np.array([x, y, z], np.float32)


def main(csv):
    assert cv2.__version__.startswith("4."), cv2.__version__
    df = pd.read_csv(csv, skipinitialspace=True)
    pdm = PDM.load()
    rows = df.index[::3]
    landmarks = np.stack([df.loc[rows, [f"{c}_{i}" for i in range(68)]].to_numpy(np.float32) for c in "xy"], axis=2)
    g = df.loc[rows, ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"]].to_numpy(np.float32)
    shapes = np.stack([pdm.calc_shape_3d(p) for p in df.loc[rows, [f"p_{i}" for i in range(34)]].to_numpy(np.float32)])
    vga = np.float32(camera_intrinsics(640, 480))
    hd = np.float32(camera_intrinsics(1280, 720))
    problems = []
    for k in range(len(rows)):
        r, t = guess(g[k], vga)
        problems.append((shapes[k], landmarks[k], vga, r, t))  # as FeatureExtraction poses default.wmv
        if k % 4 == 0:  # another camera: the same face seen by an HD camera's intrinsics
            problems.append((shapes[k], landmarks[k] * 2, hd, *guess(g[k] * np.float32([1, 1, 1, 1, 2, 2]), hd)))
        if k % 4 == 1:  # a poor guess (yaw off by 0.35 rad): more iterations, damping raised and lowered
            problems.append((shapes[k], landmarks[k], vga, r + np.float32([0, 0.35, 0]), t))
    object_points, image_points, intrinsics, rvecs, tvecs = (np.ascontiguousarray(np.stack(a), np.float32)
                                                            for a in zip(*problems))
    out = np.empty((len(problems), 6), np.float32)
    for i in range(len(problems)):
        fx, fy, cx, cy = intrinsics[i]
        camera = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float32)
        _, rvec, tvec = cv2.solvePnP(object_points[i], image_points[i], camera, None, rvecs[i].reshape(3, 1).copy(),
                                     tvecs[i].reshape(3, 1).copy(), useExtrinsicGuess=True,
                                     flags=cv2.SOLVEPNP_ITERATIVE)
        out[i, :3], out[i, 3:] = rvec.ravel(), tvec.ravel()
    np.savez_compressed(Path(__file__).with_name("solve_pnp_opencv4.npz"), object_points=object_points,
                        image_points=image_points, intrinsics=intrinsics, rvecs=rvecs, tvecs=tvecs, expected=out,
                        opencv=cv2.__version__)


if __name__ == "__main__":
    main(sys.argv[1])
