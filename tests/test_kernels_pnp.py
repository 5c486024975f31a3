"""Head-pose refinement (``backend.kernels.solve_pnp``: OpenCV 4.x's iterative ``solvePnP``) on every backend.

The oracle is OpenCV 4.10's ``cv2.solvePnP`` itself, stored with its inputs in
``data/solve_pnp_opencv4.npz`` (``data/make_solve_pnp_opencv4.py``): 144 problems from OpenFace's fits
of default.wmv, as ``GetPose`` poses them, from another camera, and from poor guesses.
"""
from pathlib import Path

import numpy as np
import pytest

from backends import assert_backend_close
from gpuau.cpu.pnp import solve_pnp
from gpuau.landmarks.pose import head_pose, head_poses

GOLDEN = Path(__file__).parent / "data" / "solve_pnp_opencv4.npz"
ARGS = ("object_points", "image_points", "intrinsics", "rvecs", "tvecs")


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as d:
        return {k: d[k] for k in d.files}


def test_solve_pnp_equals_opencv4(backend, golden):
    out = backend.kernels.solve_pnp(*(backend.asarray(golden[k]) for k in ARGS))
    # the emulator and Numba use the host's cos/sin/exp/log; CUDA's double versions are within an ulp
    assert_backend_close(backend, out, golden["expected"], exact=backend.name != "cuda")


def test_head_poses_of_a_batch_equal_each_face_alone(golden):
    n = 12
    shapes, landmarks, cameras = golden["object_points"][:n], golden["image_points"][:n], golden["intrinsics"][:n]
    rng = np.random.default_rng(5)
    g = np.column_stack([rng.uniform(1.5, 3, n), rng.uniform(-0.3, 0.3, (n, 3)), rng.uniform(200, 400, (n, 2))])
    g = g.astype(np.float32)
    g[3, 0] = 0  # no fit: zeros, and the others unaffected
    batch = head_poses(landmarks, shapes, g, cameras)
    alone = np.stack([head_pose(landmarks[i], shapes[i], g[i], *cameras[i]) for i in range(n)])
    np.testing.assert_array_equal(batch, alone)
    np.testing.assert_array_equal(batch[3], np.zeros(6, np.float32))
    assert batch.dtype == np.float32 and np.isfinite(batch).all()
    np.testing.assert_array_equal(head_poses(landmarks[:0], shapes[:0], g[:0], cameras[0]), np.zeros((0, 6)))


def test_degenerate_points_end_without_a_step(golden):
    """All landmarks on one pixel: the damped normal equations stay solvable or the guess is kept;
    either way the solver stops (at most 20 accepted steps) with finite numbers."""
    points = np.repeat(golden["image_points"][:1, :1], 68, axis=1)
    out = solve_pnp(golden["object_points"][:1], points, golden["intrinsics"][:1], golden["rvecs"][:1],
                    golden["tvecs"][:1])
    assert out.shape == (1, 6) and np.isfinite(out).all()


@pytest.mark.parametrize("bad, message", [
    (dict(image_points=np.zeros((1, 67, 2))), "image_points"),
    (dict(intrinsics=np.zeros((2, 4))), "intrinsics"),
    (dict(object_points=np.zeros((1, 68, 2))), "object_points"),
])
def test_solve_pnp_rejects_mismatched_shapes(golden, bad, message):
    args = {k: golden[k][:1] for k in ARGS}
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        solve_pnp(*(args[k] for k in ARGS))
