"""GPU-path wrapper of the detection validator's input kernel in ``warp.cu`` (CUDA or the CPU emulator).

Port of ``DetectionValidator::Check`` up to the network's input (``PAW::Warp`` of the face region,
``NormaliseWarpedToVector``), LandmarkDetectionValidator.cpp and PAW.cpp; same arguments and result
as :func:`gpuau.cpu.paw.validator_faces`.
"""
from __future__ import annotations

import numpy as np

from gpuau.kernels.loader import contiguous, on_device

BLOCK = 256


@on_device
def validator_faces(backend, images, image_index, regions, coefficients, triangle_id, min_x: float, min_y: float,
                    rank, mean, std):
    """The validator network's inputs of a batch of faces of one view, on the backend's device.

    Parameters
    ----------
    backend : gpuau.device.Backend
    images : (B, H, W) uint8 or float32
    image_index : (F,) int ; regions : (F, 4) int ; coefficients : (F, T, 6) float32
    triangle_id, rank : (h, w) int32 ; min_x, min_y : float ; mean, std : (n,) float32
        As :func:`gpuau.cpu.paw.validator_faces`.

    Returns
    -------
    (F, h, w) float32 on the backend's device
    """
    xp = backend.xp
    images = contiguous(xp, images)
    if images.dtype not in (np.uint8, np.float32) or images.ndim != 3:
        raise ValueError(f"validator_faces: images must be (B, H, W) uint8 or float32, got {images.dtype} {images.shape}")
    coefficients = contiguous(xp, coefficients, np.float32)
    triangle_id = contiguous(xp, triangle_id, np.int32)
    n_faces, n_tris = int(coefficients.shape[0]), int(coefficients.shape[1])
    out_h, out_w = (int(v) for v in triangle_id.shape)
    out = xp.empty((n_faces, out_h, out_w), np.float32)
    if n_faces:
        i32, f32 = np.int32, np.float32
        kernel = "validator_faces_u8" if images.dtype == np.uint8 else "validator_faces_f32"
        backend.load_module("warp").get_function(kernel)(
            (n_faces, 1, 1), (BLOCK, 1, 1),
            (images, i32(images.shape[1]), i32(images.shape[2]),
             contiguous(xp, image_index, np.int32),
             contiguous(xp, regions, np.int32), coefficients, i32(n_tris), triangle_id,
             i32(out_h), i32(out_w), f32(min_x), f32(min_y), contiguous(xp, rank, np.int32),
             contiguous(xp, mean, np.float32),
             contiguous(xp, std, np.float32), i32(len(mean)), out))
    return out
