"""Rotation conversions between Euler angles, rotation matrices and axis-angle vectors, in float32.

Port of ``Euler2RotationMatrix``, ``RotationMatrix2Euler``, ``Euler2AxisAngle``,
``AxisAngle2Euler``, ``AxisAngle2RotationMatrix`` and ``RotationMatrix2AxisAngle``,
RotationHelpers.h (the arithmetic is in :mod:`gpuau.cpu.pdm_fit`).  Euler angles are
``(pitch, yaw, roll)`` = rotations about x, y, z, and ``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)``.
Axis-angle conversions follow ``cv::Rodrigues``, as OpenFace's do.
"""
from __future__ import annotations

import numpy as np

from gpuau.cpu import pdm_fit as kern

_F = np.float32


def _vec(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=_F).reshape(3)


def _mat(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=_F).reshape(3, 3)


def euler_to_rotation_matrix(euler) -> np.ndarray:
    """Rotation matrix of Euler angles ``(pitch, yaw, roll)`` (radians) -> (3, 3) float32."""
    return kern.euler_to_rotation(_vec(euler))


def rotation_matrix_to_euler(r) -> np.ndarray:
    """Euler angles ``(pitch, yaw, roll)`` of a (3, 3) rotation matrix, through its quaternion -> (3,) float32."""
    return kern.rotation_to_euler(_mat(r))


def rotation_matrix_to_axis_angle(r) -> np.ndarray:
    """Axis-angle vector of a (3, 3) rotation matrix (``cv::Rodrigues``) -> (3,) float32."""
    return kern.rodrigues_to_vector(_mat(r))


def axis_angle_to_rotation_matrix(axis_angle) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (``cv::Rodrigues``) -> (3, 3) float32."""
    return kern.rodrigues_to_matrix(_vec(axis_angle))


def euler_to_axis_angle(euler) -> np.ndarray:
    """Axis-angle vector of Euler angles -> (3,) float32."""
    return rotation_matrix_to_axis_angle(euler_to_rotation_matrix(euler))


def axis_angle_to_euler(axis_angle) -> np.ndarray:
    """Euler angles of an axis-angle vector -> (3,) float32."""
    return rotation_matrix_to_euler(axis_angle_to_rotation_matrix(axis_angle))
