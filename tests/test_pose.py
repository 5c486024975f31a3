"""Head pose and camera-space 3D landmarks reproduced from the reference CSVs' own landmarks and
PDM parameters.

The inputs are printed values (landmarks to 0.1 px, parameters to 3 decimals), so results are
compared before rounding with tolerances of the print precision plus the effect of the input
rounding, and checked for bias (a wrong formula shows as a systematic offset).  From OpenFace's own fits at
full precision (``data/openface-precise``) the pose must come within 2 float32 ulps of OpenFace's."""
from pathlib import Path

import numpy as np
import pytest

from gpuau.landmarks.pdm import PDM
from gpuau.landmarks.pose import head_pose, head_poses, landmarks_3d
from gpuau.landmarks.rotation import euler_to_rotation_matrix
from gpuau.video.source import camera_intrinsics
from reference import global_params, landmarks_2d, local_params, read_reference
from reference import landmarks_3d as reference_xyz

POSE_COLS = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
# Largest |ours - reference| before rounding: half the print step (0.1 mm, 0.001 rad) plus what
# rounding the reference landmarks to 0.1 px does to the PnP solution (jitter std ~0.03 mm in Tz).
POSE_TOL = np.array([0.08, 0.08, 0.15, 0.0012, 0.0012, 0.0012])
POSE_BIAS_TOL = np.array([0.015, 0.015, 0.015, 1.5e-4, 1.5e-4, 1.5e-4])


@pytest.fixture(scope="module")
def pdm(models_dir):
    return PDM.load()


def _reference(reference_dir, name, pdm):
    df = read_reference(reference_dir / f"{name}.csv")
    shape_3d = np.stack([pdm.calc_shape_3d(p) for p in local_params(df)])
    return df, landmarks_2d(df), global_params(df), shape_3d, reference_xyz(df)


@pytest.mark.parametrize("name", ["default", "2015-10-15-15-14"])
def test_head_pose_matches_reference(reference_dir, pdm, name):
    df, lm, g, shape_3d, _ = _reference(reference_dir, name, pdm)
    intrinsics = camera_intrinsics(640, 480)
    assert intrinsics == (500.0, 500.0, 320.0, 240.0)
    pose = np.stack([head_pose(lm[i], shape_3d[i], g[i], *intrinsics) for i in range(len(df))])
    diff = pose - df[POSE_COLS].to_numpy()
    assert np.all(np.abs(diff).max(axis=0) <= POSE_TOL), np.abs(diff).max(axis=0)
    assert np.all(np.abs(diff.mean(axis=0)) <= POSE_BIAS_TOL), diff.mean(axis=0)
    printed_t = np.abs(np.round(pose[:, :3], 1) - df[POSE_COLS[:3]].to_numpy()) < 0.05
    printed_r = np.abs(np.round(pose[:, 3:], 3) - df[POSE_COLS[3:]].to_numpy()) < 5e-4
    assert printed_t.mean() >= 0.85 and printed_r.mean() >= 0.85


def test_landmarks_3d_match_reference(reference_dir, pdm):
    df, lm, g, shape_3d, xyz = _reference(reference_dir, "default", pdm)
    intrinsics = camera_intrinsics(640, 480)
    ours = landmarks_3d(lm, shape_3d, g, *intrinsics)
    assert ours.shape == (len(df), 68, 3) and ours.dtype == np.float32
    # The printed scale (3 decimals) moves the depth fx / scale by up to ~0.3 mm.
    assert np.abs(ours - xyz).max() <= 0.35
    # With the scale recovered from the reference depths, only print rounding is left.
    rot = np.stack([euler_to_rotation_matrix(p[1:4]) for p in g])
    z_model = np.einsum("fk,fnk->fn", rot[:, 2, :], shape_3d)
    g_fine = g.copy()
    g_fine[:, 0] = intrinsics[0] / (xyz[..., 2] - z_model).mean(axis=1)
    assert np.abs(g_fine[:, 0] - g[:, 0]).max() <= 5.1e-4
    ours = landmarks_3d(lm, shape_3d, g_fine, *intrinsics)
    assert np.abs(ours - xyz).max() <= 0.12
    assert np.abs((ours - xyz).mean(axis=(0, 1))).max() <= 0.01
    np.testing.assert_allclose(landmarks_3d(lm[3], shape_3d[3], g_fine[3], *intrinsics), ours[3])


def test_no_fit_gives_zero_pose(pdm):
    shape_3d = pdm.calc_shape_3d(np.zeros(34))
    pose = head_pose(np.zeros((68, 2)), shape_3d, np.zeros(6), 500, 500, 320, 240)
    np.testing.assert_array_equal(pose, np.zeros(6))


def test_head_pose_from_openface_states_is_within_two_ulps_of_openface():
    """OpenFace's own fits of default.wmv's first 100 frames (landmarks and PDM parameters as float32,
    ``tests/data/openface-precise``) and the pose its ``GetPose`` computed from them, printed at 9
    digits by the same build (``FeatureExtraction -pose``).  gpuau's refinement is OpenCV 4.x's solver
    (bit for bit: ``test_kernels_pnp.py``); what remains is float32 rounding in the 3D shape
    (``CalcShape3D``'s product runs through OpenBLAS there) and in the Euler angles (OpenFace's build
    contracts multiply-adds): measured at most 1 ulp of the translation's length and of one radian (bound: 2),
    where OpenCV 5's ``cv2.solvePnP`` is up to 3 and 42 ulps away."""
    import gzip
    import io

    import pandas as pd

    from reference import GLOBAL_PARAMS, LOCAL_PARAMS

    data = Path(__file__).parent / "data" / "openface-precise"
    read = lambda name: pd.read_csv(io.BytesIO(gzip.decompress((data / name).read_bytes())),  # noqa: E731
                                    skipinitialspace=True)
    states, expected = read("default.csv.gz"), read("default-pose.csv.gz")
    assert list(states["frame"]) == list(expected["frame"])
    pdm = PDM.load()
    shape_3d = np.stack([pdm.calc_shape_3d(p) for p in states[LOCAL_PARAMS].to_numpy(np.float32)])
    pose = head_poses(np.ascontiguousarray(landmarks_2d(states)), shape_3d, states[GLOBAL_PARAMS].to_numpy(np.float32),
                      camera_intrinsics(640, 480))
    openface = expected[POSE_COLS].to_numpy(np.float32)
    # in ulps of the translation's length (mm) and of one radian: the scales the solver works at
    scale = np.repeat([np.linalg.norm(openface[:, :3], axis=1), np.ones(len(openface))], 3, axis=0).T
    ulps = np.abs(pose - openface) / np.spacing(scale.astype(np.float32))
    assert ulps.max() <= 2, ulps.max(axis=0)
