"""Eye gaze and the eyes' landmarks as FeatureExtraction writes them (``gaze_0_*``, ``gaze_1_*``,
``gaze_angle_*``, ``eye_lmk_*``).

The eyes are the hierarchical part models ``left_eye_28`` and ``right_eye_28`` (28 points each, the first 8
on the iris), fitted after the main model (:mod:`gpuau.landmarks.clnf`).  Each
eye's camera-space landmarks are the part model's ``CLNF::GetShape``, as for the face
(:func:`~gpuau.landmarks.pose.landmarks_3d`).  The gaze of an eye is the unit vector from the centre of
its eyeball to the point where the camera's ray through the pupil (the mean of the 8 iris points in camera space)
meets the eyeball: a sphere of 12 mm radius whose centre is the middle of the eye's corners on the face's 3D landmarks
(36 and 39, 42 and 45) moved by ``(0, -3.5, 7)`` mm in the head's frame (the head pose's rotation).  The gaze angle
is that of the mean of the two eyes' vectors, ``(atan2(x, -z), atan2(y, -z))`` radians.

Port of ``GazeAnalysis::EstimateGaze``, ``GetPupilPosition``, ``RaySphereIntersect`` and ``GetGazeAngle``
(GazeEstimation.cpp) and of ``Calculate3DEyeLandmarks`` / ``CalculateAllEyeLandmarks``
(LandmarkDetectorUtils.cpp), in OpenFace's float32 arithmetic (its ``cv::mean`` and ``cv::norm`` in double).
Where the ray misses the sphere OpenFace takes ``(0, 0, -1)`` as the intersection, and so does this port.
"""
from __future__ import annotations

import numpy as np

from gpuau.landmarks.pose import landmarks_3d
from gpuau.landmarks.rotation import euler_to_rotation_matrix

_F = np.float32

EYE_PARTS = ("left_eye_28", "right_eye_28")
"""The eye part models, in the order of ``gaze_0`` / ``gaze_1`` and of ``eye_lmk_*`` (left: 0-27, right: 28-55)."""
EYE_CORNERS = ((36, 39), (42, 45))
"""The face landmarks whose middle is each eye's (``left_eye_28``'s, ``right_eye_28``'s) eyeball centre, less the
offset."""
EYEBALL_OFFSET = np.array([0.0, -3.5, 7.0])
"""From the middle of the eye corners to the eyeball's centre, mm, in the head's frame."""
EYEBALL_RADIUS = _F(12.0)
IRIS_POINTS = 8
"""The first landmarks of an eye model, on the iris; their mean is the pupil."""


def eye_parts(clnf) -> list:
    """The :class:`~gpuau.landmarks.clnf.Part` of each of :data:`EYE_PARTS` that the landmark fit uses, in that
    order; empty when the fit leaves the part models out (``--quality fast``) or the model has no eyes."""
    if not clnf.parameters.refine_hierarchical:
        return []
    parts = {p.name: p for p in clnf.parts}
    return [parts[n] for n in EYE_PARTS] if all(n in parts for n in EYE_PARTS) else []


def _unit(v: np.ndarray) -> np.ndarray:
    """``v / cv::norm(v)`` of float32 3-vectors ``(..., 3)``: the norm and the division in double, as OpenCV's
    ``Point3f / double``."""
    v64 = v.astype(np.float64)
    return (v64 / np.sqrt(np.sum(v64 * v64, axis=-1, keepdims=True))).astype(_F)


def _ray_sphere(direction: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``RaySphereIntersect`` of rays from the camera's origin along ``direction`` (..., 3) with spheres of
    :data:`EYEBALL_RADIUS` around ``centre`` (..., 3), float32, each sum of three terms left to right: the nearer
    intersection, or ``(0, 0, -1)`` where the ray misses (OpenFace's ``(-b - sqrt(disc)) / 2 * a``, which multiplies
    by ``a``, kept)."""
    a = np.sum(direction * direction, axis=-1)
    b = np.sum(_F(2) * direction * -centre, axis=-1)
    c = np.sum(centre * centre, axis=-1) - EYEBALL_RADIUS * EYEBALL_RADIUS
    disc = b * b - _F(4) * a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / _F(2) * a
    return np.where((disc < 0)[..., None], np.array([0, 0, -1], _F), direction * t[..., None])


def eye_gaze(face_points_3d, pose_euler, eye_points_3d) -> np.ndarray:
    """Gaze of both eyes and its angle for a batch of faces.

    Parameters
    ----------
    face_points_3d : array_like (N, 68, 3)
        The face's camera-space landmarks (the CSV's ``X_i, Y_i, Z_i``), mm.
    pose_euler : array_like (N, 3)
        The head pose's rotation (``pose_Rx, pose_Ry, pose_Rz``), radians.
    eye_points_3d : array_like (N, 2, 28, 3)
        Each eye's camera-space landmarks (:func:`eye_landmarks_3d`), in :data:`EYE_PARTS`' order.

    Returns
    -------
    ndarray (N, 8) float32
        ``gaze_0_x, gaze_0_y, gaze_0_z, gaze_1_x, gaze_1_y, gaze_1_z, gaze_angle_x, gaze_angle_y``.
    """
    face = np.asarray(face_points_3d, _F)
    eyes = np.asarray(eye_points_3d, _F)
    n = len(face)
    rot = np.array([euler_to_rotation_matrix(e) for e in np.asarray(pose_euler, _F).reshape(n, 3)], _F)
    offset = (rot.astype(np.float64) @ EYEBALL_OFFSET).astype(_F)  # cv::gemm of floats, in double
    corners = np.array(EYE_CORNERS)
    centre = (face[:, corners[:, 0]] + face[:, corners[:, 1]]) * _F(0.5) + offset[:, None]  # (N, 2, 3)
    pupil = eyes[:, :, :IRIS_POINTS].astype(np.float64).mean(axis=2).astype(_F)  # cv::mean, in double
    gaze = _unit(_ray_sphere(_unit(pupil), centre) - centre)
    mean = (gaze[:, 0] + gaze[:, 1]) / _F(2)
    angles = np.arctan2(mean[:, :2], -mean[:, 2:]).astype(_F)
    return np.concatenate([gaze.reshape(n, 6), angles], axis=1)


def eye_landmarks_3d(parts: list, part_landmarks: list, part_params: list, intrinsics) -> np.ndarray:
    """Camera-space landmarks of the eye models of a batch of faces (``Calculate3DEyeLandmarks``).

    Parameters
    ----------
    parts : list of Part
        :func:`eye_parts`.
    part_landmarks : list of dict
        Per face, part name -> ``(28, 2)`` landmarks.
    part_params : list of dict
        Per face, part name -> ``(params_global (6,), params_local (m,))``.
    intrinsics : ndarray (N, 4)
        Each face's camera ``fx, fy, cx, cy``.

    Returns
    -------
    ndarray (N, len(parts), 28, 3) float32
    """
    camera = np.asarray(intrinsics, _F).reshape(-1, 4)
    lm = np.array([[d[part.name] for part in parts] for d in part_landmarks], _F)
    g = np.array([[d[part.name][0] for part in parts] for d in part_params], _F)
    shapes = np.array([[part.model.pdm.calc_shape_3d(d[part.name][1]) for part in parts] for d in part_params], _F)
    return landmarks_3d(lm, shapes, g, *camera.T[:, :, None, None])
