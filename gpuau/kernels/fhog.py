"""GPU-path wrapper of the FHOG kernels in ``fhog.cu`` (CUDA or the CPU emulator).

Port of dlib's ``extract_fhog_features`` as OpenFace's ``Extract_FHOG_descriptor`` calls it
(Face_utils.cpp); same arguments and output as :func:`gpuau.cpu.fhog.fhog`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gpuau.kernels.loader import on_device

BLOCK = (16, 16, 1)
NUM_CHANNELS = 31
MAX_GRID_Z = 65535


class FhogLayout(NamedTuple):
    """dlib's cell grid for an image: histogram cells, output cells, pixels with a gradient, and the
    first column of dlib's scalar tail (columns before it go through its 8-lane code)."""

    cells_nr: int
    cells_nc: int
    hog_nr: int
    hog_nc: int
    vis_nr: int
    vis_nc: int
    simd_end: int


def fhog_layout(height: int, width: int, cell_size: int = 8) -> FhogLayout:
    """Cell grid of dlib's ``impl_extract_fhog_features`` for a ``height`` x ``width`` image."""
    cells_nr = int(np.float32(height) / np.float32(cell_size) + 0.5)
    cells_nc = int(np.float32(width) / np.float32(cell_size) + 0.5)
    vis_nr = min(cells_nr * cell_size, height) - 1
    vis_nc = min(cells_nc * cell_size, width) - 1
    simd_end = 1
    while simd_end < vis_nc - 7:
        simd_end += 8
    return FhogLayout(cells_nr, cells_nc, max(cells_nr - 2, 0), max(cells_nc - 2, 0), vis_nr, vis_nc, simd_end)


def check_fhog_images(xp, images):
    """``images`` as a C-contiguous (N, H, W, C) uint8 array with C = 1 or 3 (shared with the Numba twin)."""
    images = xp.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"fhog expects uint8 images, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(f"fhog expects (N, H, W, 3) or (N, H, W) images, got {images.shape}")
    return xp.ascontiguousarray(images)


def _grid(w: int, h: int, n: int) -> tuple:
    return (-(-w // BLOCK[0]), -(-h // BLOCK[1]), n)


@on_device
def fhog(backend, images, cell_size: int = 8):
    """FHOG descriptors of a batch of faces on ``backend`` (``cuda`` or ``emulated``).

    Parameters
    ----------
    backend : gpuau.device.Backend
    images : (N, H, W, 3) uint8 BGR or (N, H, W) uint8
    cell_size : int

    Returns
    -------
    (N, R * C * 31) float32 on the backend's device
        As :func:`gpuau.cpu.fhog.fhog`.
    """
    xp = backend.xp
    images = check_fhog_images(xp, images)
    n, h, w, c = (int(v) for v in images.shape)
    cells_nr, cells_nc, hog_nr, hog_nc, vis_nr, vis_nc, simd_end = fhog_layout(h, w, cell_size)
    out = xp.zeros((n, hog_nr * hog_nc * NUM_CHANNELS), np.float32)
    if n == 0 or hog_nr == 0 or hog_nc == 0:
        return out
    if n > MAX_GRID_Z:
        return xp.concatenate([fhog(backend, images[i : i + MAX_GRID_Z], cell_size) for i in range(0, n, MAX_GRID_Z)])
    orient = xp.zeros((n, h, w), np.int32)
    col0 = xp.zeros((n, h, w), np.int32)
    weights = xp.zeros((n, h, w, 4), np.float32)
    hist = xp.empty((n, cells_nr + 2, cells_nc + 2, 18), np.float32)
    norm = xp.empty((n, cells_nr, cells_nc), np.float32)
    mod = backend.load_module("fhog")
    i32 = np.int32
    mod.get_function("fhog_pixels")(
        _grid(vis_nc - 1, vis_nr - 1, n), BLOCK,
        (images, i32(n), i32(h), i32(w), i32(c), i32(cell_size), i32(vis_nr), i32(vis_nc), i32(simd_end), orient,
         weights, col0))
    mod.get_function("fhog_hist")(
        _grid(cells_nc + 2, cells_nr + 2, n), BLOCK,
        (orient, weights, col0, i32(n), i32(h), i32(w), i32(cell_size), i32(vis_nr), i32(vis_nc), i32(cells_nr),
         i32(cells_nc), hist))
    mod.get_function("fhog_norm")(_grid(cells_nc, cells_nr, n), BLOCK, (hist, i32(n), i32(cells_nr), i32(cells_nc), norm))
    mod.get_function("fhog_features")(_grid(hog_nc, hog_nr, n), BLOCK, (hist, norm, i32(n), i32(cells_nr), i32(cells_nc), out))
    return out
