"""Rotation conversions between Euler angles, rotation matrices and axis-angle vectors, in float32.

Port of ``Euler2RotationMatrix``, ``RotationMatrix2Euler``, ``Euler2AxisAngle``,
``AxisAngle2Euler``, ``AxisAngle2RotationMatrix`` and ``RotationMatrix2AxisAngle``,
RotationHelpers.h.  Euler angles are ``(pitch, yaw, roll)`` = rotations about x, y, z, and
``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)``.  Axis-angle conversions go through ``cv2.Rodrigues`` as
OpenFace's do.
"""
from __future__ import annotations

import cv2
import numpy as np

_F = np.float32


def euler_to_rotation_matrix(euler) -> np.ndarray:
    """Rotation matrix of Euler angles.

    Parameters
    ----------
    euler : array_like (3,)
        ``(pitch, yaw, roll)`` in radians.

    Returns
    -------
    ndarray (3, 3) float32
    """
    e = np.asarray(euler, dtype=_F)
    s1, s2, s3 = np.sin(e)
    c1, c2, c3 = np.cos(e)
    return np.array(
        [
            [c2 * c3, -c2 * s3, s2],
            [c1 * s3 + c3 * s1 * s2, c1 * c3 - s1 * s2 * s3, -c2 * s1],
            [s1 * s3 - c1 * c3 * s2, c3 * s1 + c1 * s2 * s3, c1 * c2],
        ],
        dtype=_F,
    )


def rotation_matrix_to_euler(r) -> np.ndarray:
    """Euler angles of a rotation matrix, through its quaternion.

    Parameters
    ----------
    r : array_like (3, 3)

    Returns
    -------
    ndarray (3,) float32
        ``(pitch, yaw, roll)``.
    """
    r = np.asarray(r, dtype=_F)
    q0 = np.sqrt(_F(1) + r[0, 0] + r[1, 1] + r[2, 2]) / _F(2)
    q1 = (r[2, 1] - r[1, 2]) / (_F(4) * q0)
    q2 = (r[0, 2] - r[2, 0]) / (_F(4) * q0)
    q3 = (r[1, 0] - r[0, 1]) / (_F(4) * q0)
    t1 = np.clip(_F(2) * (q0 * q2 + q1 * q3), _F(-1), _F(1))
    yaw = np.arcsin(t1)
    pitch = np.arctan2(_F(2) * (q0 * q1 - q2 * q3), q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3)
    roll = np.arctan2(_F(2) * (q0 * q3 - q1 * q2), q0 * q0 + q1 * q1 - q2 * q2 - q3 * q3)
    return np.array([pitch, yaw, roll], dtype=_F)


def rotation_matrix_to_axis_angle(r) -> np.ndarray:
    """Axis-angle vector of a rotation matrix (``cv2.Rodrigues``).

    Returns
    -------
    ndarray (3,) float32
    """
    return cv2.Rodrigues(np.asarray(r, dtype=_F))[0].reshape(3)


def axis_angle_to_rotation_matrix(axis_angle) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (``cv2.Rodrigues``).

    Returns
    -------
    ndarray (3, 3) float32
    """
    return cv2.Rodrigues(np.asarray(axis_angle, dtype=_F).reshape(3, 1))[0]


def euler_to_axis_angle(euler) -> np.ndarray:
    """Axis-angle vector of Euler angles.

    Returns
    -------
    ndarray (3,) float32
    """
    return rotation_matrix_to_axis_angle(euler_to_rotation_matrix(euler))


def axis_angle_to_euler(axis_angle) -> np.ndarray:
    """Euler angles of an axis-angle vector.

    Returns
    -------
    ndarray (3,) float32
    """
    return rotation_matrix_to_euler(axis_angle_to_rotation_matrix(axis_angle))
