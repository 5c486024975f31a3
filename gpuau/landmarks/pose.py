"""Head pose and camera-space 3D landmarks from a CLNF fit, as FeatureExtraction writes them
(``pose_T*``, ``pose_R*``, ``X_i``, ``Y_i``, ``Z_i``).

Both start from the weak-perspective fit: the depth of the face is ``fx / scale``.  The pose
refines it by perspective-n-point between the PDM's 3D shape and the 2D landmarks (OpenCV 4.x's
``solvePnP`` reimplemented, batched over faces: :mod:`gpuau.cpu.pnp`, ``gpuau/kernels/pnp.cu``); the 3D
landmarks back-project the 2D landmarks at the depth of each rotated model point.  Units are
millimetres (the PDM's) and radians.  Camera intrinsics ``fx, fy, cx, cy`` default in
FeatureExtraction to :func:`gpuau.video.source.camera_intrinsics` of the frame size.
"""
from __future__ import annotations

import numpy as np

from gpuau.device import Backend, resolve_device
from gpuau.landmarks.rotation import axis_angle_to_euler, euler_to_rotation_matrix

_F = np.float32


def head_poses(landmarks_2d: np.ndarray, shape_3d: np.ndarray, params_global: np.ndarray, intrinsics,
               backend: "str | Backend" = "cpu") -> np.ndarray:
    """Head poses ``(Tx, Ty, Tz, Rx, Ry, Rz)`` of a batch of faces relative to the camera.

    Perspective-n-point refinement (:func:`gpuau.cpu.pnp.solve_pnp`: OpenCV 4.x's iterative
    ``cv::solvePnP``, no distortion, one launch for the batch) from the weak-perspective estimate:
    translation ``((tx - cx) / fx * Z, (ty - cy) / fy * Z, Z)`` with ``Z = fx / scale``, and
    OpenFace's initial rotation vector, which is the PDM's Euler angles taken as an axis-angle vector.
    The refined rotation is returned as Euler angles.  Port of ``LandmarkDetector::GetPose``,
    LandmarkDetectorFunc.cpp.

    Parameters
    ----------
    landmarks_2d : ndarray (N, n, 2)
        Fitted image landmarks.
    shape_3d : ndarray (N, n, 3)
        ``PDM.calc_shape_3d(params_local)`` of each face (model frame, unrotated).
    params_global : ndarray (N, 6)
        ``[scale, rx, ry, rz, tx, ty]``.
    intrinsics : array_like (4,) or (N, 4)
        Camera ``fx, fy, cx, cy``, for all faces or per face.
    backend : str or Backend
        Where the refinement runs (``backend.kernels.solve_pnp``).

    Returns
    -------
    ndarray (N, 6) float32
        Zeros for a face whose scale is 0 (no fit).
    """
    g = np.asarray(params_global, dtype=_F).reshape(-1, 6)
    n = len(g)
    camera = np.broadcast_to(np.asarray(intrinsics, dtype=_F), (n, 4))
    fx, fy, cx, cy = camera.T
    poses = np.zeros((n, 6), _F)
    fitted = np.flatnonzero(g[:, 0] != 0)
    if len(fitted) == 0:
        return poses
    g, fx, fy, cx, cy = g[fitted], fx[fitted], fy[fitted], cx[fitted], cy[fitted]
    z = fx / g[:, 0]
    # OpenFace's double expressions, rounded into its cv::Vec3f
    x = ((g[:, 4] - cx).astype(np.float64) * (1.0 / fx.astype(np.float64)) * z).astype(_F)
    y = ((g[:, 5] - cy).astype(np.float64) * (1.0 / fy.astype(np.float64)) * z).astype(_F)
    backend = resolve_device(backend)
    refined = backend.asnumpy(backend.kernels.solve_pnp(
        np.asarray(shape_3d, _F).reshape(n, -1, 3)[fitted], np.asarray(landmarks_2d, _F).reshape(n, -1, 2)[fitted],
        camera[fitted], g[:, 1:4], np.stack([x, y, z], axis=1)))
    poses[fitted, :3] = refined[:, 3:]
    poses[fitted, 3:] = [axis_angle_to_euler(r) for r in refined[:, :3]]
    return poses


def head_pose(landmarks_2d: np.ndarray, shape_3d: np.ndarray, params_global: np.ndarray, fx: float, fy: float,
              cx: float, cy: float) -> np.ndarray:
    """Head pose ``(Tx, Ty, Tz, Rx, Ry, Rz)`` of one face (:func:`head_poses` of one, on the CPU).

    Parameters
    ----------
    landmarks_2d : ndarray (n, 2)
    shape_3d : ndarray (n, 3)
    params_global : ndarray (6,)
    fx, fy, cx, cy : float
        Camera intrinsics.

    Returns
    -------
    ndarray (6,) float32
    """
    return head_poses(np.asarray(landmarks_2d)[None], np.asarray(shape_3d)[None], np.asarray(params_global)[None],
                      (fx, fy, cx, cy))[0]


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
    fx, fy, cx, cy : float or ndarray broadcasting against (..., n)
        Camera intrinsics (one ``(N, 1)`` array each for ``N`` faces with their own cameras).

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
