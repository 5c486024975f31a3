"""Gaze reproduced from the reference CSVs' own columns (the face's and the eyes' 3D landmarks, the head pose), and its
geometry on constructed eyes.

The inputs are printed values (3D landmarks to 0.1 mm, the pose to 0.001 rad), so the gaze is compared with the
tolerance that rounding gives (the eyeball centre moves by up to 0.05 mm on a 12 mm eyeball), and checked for bias: a
wrong formula (eyes swapped, the offset turned the wrong way) moves it by tenths.  The end-to-end comparison of the
gaze columns with OpenFace's is in test_end_to_end.py."""
import numpy as np
import pytest

from gpuau.io import read_openface_csv
from gpuau.landmarks.gaze import EYE_CORNERS, eye_gaze

GAZE = ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]


def _points(columns, prefix, n, ok):
    return np.stack([np.stack([columns[f"{prefix}{a}_{i}"] for a in "XYZ"], -1) for i in range(n)], 1)[ok]


@pytest.mark.parametrize("name", ["default", "2015-10-15-15-14"])
def test_gaze_from_the_reference_columns(reference_dir, name):
    ref = read_openface_csv(reference_dir / f"{name}.csv")
    ok = ref["success"] == 1
    face = _points(ref, "", 68, ok)
    eyes = _points(ref, "eye_lmk_", 56, ok).reshape(-1, 2, 28, 3)
    pose = np.stack([ref[f"pose_R{a}"] for a in "xyz"], 1)[ok]
    err = eye_gaze(face, pose, eyes) - np.stack([ref[c] for c in GAZE], 1)[ok]
    # measured: 0.0016 mean, 0.0062 max, bias 2e-4 at most
    assert np.abs(err).mean() < 0.003 and np.abs(err).max() < 0.01, np.abs(err).max(axis=0)
    assert np.abs(err.mean(axis=0)).max() < 0.001, err.mean(axis=0)


def _face_with_eyeballs(centres):
    """68 face points whose eye corners put the eyeball centres (head facing the camera, no rotation) at ``centres``."""
    face = np.zeros((1, 68, 3), np.float32)
    for (i, j), c in zip(EYE_CORNERS, centres):
        middle = np.asarray(c, np.float32) - np.float32([0, -3.5, 7.0])
        face[0, i], face[0, j] = middle - [5, 0, 0], middle + [5, 0, 0]
    return face


def test_gaze_points_from_the_eyeball_centre_to_the_pupil():
    centres = np.float32([[-30, 0, 500], [30, 0, 500]])
    face = _face_with_eyeballs(centres)
    towards = np.float32([[0.2, -0.1, -1], [-0.3, 0.2, -1]])
    towards /= np.linalg.norm(towards, axis=1, keepdims=True)
    pupils = centres + 12 * towards  # on the sides of the eyeballs facing the camera
    eyes = np.repeat(pupils[:, None], 28, axis=1)[None]  # every iris point at the pupil
    gaze = eye_gaze(face, np.zeros((1, 3)), eyes)[0]
    np.testing.assert_allclose(gaze[:3], towards[0], atol=2e-4)
    np.testing.assert_allclose(gaze[3:6], towards[1], atol=2e-4)
    mean = (towards[0] + towards[1]) / 2
    np.testing.assert_allclose(gaze[6:], [np.arctan2(mean[0], -mean[2]), np.arctan2(mean[1], -mean[2])], atol=2e-4)


def test_a_ray_missing_the_eyeball_meets_it_at_openfaces_default_point():
    centres = np.float32([[-30, 0, 500], [30, 0, 500]])
    face = _face_with_eyeballs(centres)
    eyes = np.zeros((1, 2, 28, 3), np.float32)
    eyes[0, :, :, :] = [300, 0, 500]  # far to the side: the camera's ray through it misses both eyeballs
    gaze = eye_gaze(face, np.zeros((1, 3)), eyes)[0]
    for e, c in enumerate(centres):
        expected = np.float32([0, 0, -1]) - c  # RaySphereIntersect's (0, 0, -1), less the centre
        np.testing.assert_allclose(gaze[3 * e:3 * e + 3], expected / np.linalg.norm(expected), atol=1e-6)
