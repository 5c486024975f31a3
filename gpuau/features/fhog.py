"""FHOG descriptors of aligned faces on the selected device.

Port of ``Extract_FHOG_descriptor`` (Face_utils.cpp) over dlib's ``extract_fhog_features``; the
compute lives in ``backend.kernels.fhog`` (:mod:`gpuau.cpu.fhog` on the CPU).
"""
from __future__ import annotations

from gpuau.device import resolve_device

CELL_SIZE = 8
"""OpenFace's FHOG cell size for the AU stage."""


def fhog_descriptors(faces, device="cpu"):
    """FHOG of a batch of aligned faces.

    Parameters
    ----------
    faces : (N, 112, 112, 3) uint8 BGR (or (N, 112, 112) greyscale), NumPy or on the device
    device : str or Backend

    Returns
    -------
    (N, 4464) float32, on the device's array module (NumPy, or CuPy on ``cuda``)
        12 x 12 cells row by row, 31 channels per cell.
    """
    backend = resolve_device(device)
    return backend.kernels.fhog(backend.xp.ascontiguousarray(backend.asarray(faces)), CELL_SIZE)
