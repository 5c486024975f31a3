"""Head pose and camera-space 3D landmarks from a CLNF fit, as FeatureExtraction writes them
(``pose_T*``, ``pose_R*``, ``X_i``, ``Y_i``, ``Z_i``).

Both start from the weak-perspective fit: the depth of the face is ``fx / scale``.  The pose
refines it by perspective-n-point between the PDM's 3D shape and the 2D landmarks; the 3D
landmarks back-project the 2D landmarks at the depth of each rotated model point.  Units are
millimetres (the PDM's) and radians.  Camera intrinsics ``fx, fy, cx, cy`` default in
FeatureExtraction to :func:`gpuau.video.source.camera_intrinsics` of the frame size.
"""
from __future__ import annotations

import cv2
import numpy as np

from gpuau.landmarks.rotation import axis_angle_to_euler, euler_to_rotation_matrix

_F = np.float32


def head_pose(landmarks_2d: np.ndarray, shape_3d: np.ndarray, params_global: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Head pose ``(Tx, Ty, Tz, Rx, Ry, Rz)`` relative to the camera.

    ``cv2.solvePnP`` (iterative, no distortion) from the weak-perspective estimate: translation
    ``((tx - cx) / fx * Z, (ty - cy) / fy * Z, Z)`` with ``Z = fx / scale``, and OpenFace's initial
    rotation vector, which is the PDM's Euler angles taken as an axis-angle vector.  The refined
    rotation is returned as Euler angles.  Port of ``LandmarkDetector::GetPose``,
    LandmarkDetectorFunc.cpp.

    Parameters
    ----------
    landmarks_2d : ndarray (n, 2)
        Fitted image landmarks.
    shape_3d : ndarray (n, 3)
        ``PDM.calc_shape_3d(params_local)`` (model frame, unrotated).
    params_global : ndarray (6,)
        ``[scale, rx, ry, rz, tx, ty]``.
    fx, fy, cx, cy : float
        Camera intrinsics.

    Returns
    -------
    ndarray (6,) float32
        Zeros when the scale is 0 (no fit).
    """
    g = np.asarray(params_global, dtype=_F)
    if g[0] == 0:
        return np.zeros(6, dtype=_F)
    fx, fy, cx, cy = (_F(v) for v in (fx, fy, cx, cy))
    z = fx / g[0]
    x = _F(float(g[4] - cx) * (1.0 / float(fx)) * float(z))
    y = _F(float(g[5] - cy) * (1.0 / float(fy)) * float(z))
    camera = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=_F)
    rvec = g[1:4].reshape(3, 1).copy()
    tvec = np.array([[x], [y], [z]], dtype=_F)
    _, rvec, tvec = cv2.solvePnP(
        np.ascontiguousarray(shape_3d, dtype=_F), np.ascontiguousarray(landmarks_2d, dtype=_F), camera, None,
        rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE,
    )
    euler = axis_angle_to_euler(rvec.astype(_F).reshape(3))
    return np.concatenate([tvec.astype(_F).reshape(3), euler]).astype(_F)


def landmarks_3d(landmarks_2d: np.ndarray, shape_3d: np.ndarray, params_global: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3D landmarks in camera space (millimetres).

    Each landmark's depth is ``fx / scale`` plus the z of the rotated model point; X and Y
    back-project the 2D landmark at that depth.  Port of ``CLNF::GetShape``,
    LandmarkDetectorModel.cpp.

    Parameters
    ----------
    landmarks_2d : ndarray (..., n, 2)
        Fitted image landmarks (leading axes batch several faces).
    shape_3d : ndarray (..., n, 3)
        ``PDM.calc_shape_3d(params_local)``.
    params_global : ndarray (..., 6)
    fx, fy, cx, cy : float

    Returns
    -------
    ndarray (..., n, 3) float32
        FeatureExtraction writes ``X_i, Y_i, Z_i`` = ``[..., i, 0], [..., i, 1], [..., i, 2]``.
    """
    g = np.asarray(params_global, dtype=_F)
    s3 = np.asarray(shape_3d, dtype=_F)
    lm = np.asarray(landmarks_2d, dtype=_F)
    fx, fy, cx, cy = (_F(v) for v in (fx, fy, cx, cy))
    eulers = g[..., 1:4].reshape(-1, 3)
    rot = np.array([euler_to_rotation_matrix(e) for e in eulers], _F).reshape(g.shape[:-1] + (3, 3))
    z_rot = np.einsum("...k,...nk->...n", rot[..., 2, :].astype(np.float64), s3.astype(np.float64)).astype(_F)
    z = fx / g[..., :1] + z_rot
    x = z * ((lm[..., 0] - cx) / fx)
    y = z * ((lm[..., 1] - cy) / fy)
    return np.stack([x, y, z], axis=-1).astype(_F)
