"""GPU-path wrapper of the PNet pyramid mosaic kernels in ``pyramid.cu`` (CUDA or the CPU emulator).

Port of the pyramid loop of FaceDetectorMTCNN::DetectFaces, FaceDetectorMTCNN.cpp; same arguments
and output as :func:`gpuau.cpu.pnet_pyramid.pnet_pyramid`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gpuau.kernels.loader import on_device

BLOCK = (32, 8, 1)
MAX_GRID_Z = 65535
PAD = np.float32((0 - 127.5) * 0.0078125)
"""A canvas pixel outside every level: a zero pixel, normalised as MTCNN's input."""


class PyramidArgs(NamedTuple):
    """Validated arguments of :func:`pnet_pyramid` (arrays on the caller's device)."""

    frames: object  # (B, H, W, 3) uint8 | float32, C-contiguous
    levels: np.ndarray  # (L, 4) int32 rows (y0, x0, h, w)
    scales: np.ndarray  # (L, 2) float64 rows (1 / (h / H), 1 / (w / W)), cv::resize's scale_y, scale_x
    out_shape: tuple  # (B, 3, canvas_h, canvas_w)


def check_pyramid_args(xp, frames, sizes, offsets, canvas_h: int, canvas_w: int) -> PyramidArgs:
    """Validate and normalise :func:`pnet_pyramid`'s arguments for array module ``xp`` (frames of
    another dtype become float32, as OpenFace resizes the float frame).

    Shared by the kernel wrapper and the CPU implementations (:mod:`gpuau.cpu.pnet_pyramid`).
    """
    frames = xp.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"pnet_pyramid: frames must be (B, H, W, 3), got shape {frames.shape}")
    if frames.dtype not in (np.uint8, np.float32):
        frames = frames.astype(np.float32)
    frames = xp.ascontiguousarray(frames)
    sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
    offsets = np.asarray(offsets, np.int64).reshape(-1, 2)
    canvas_h, canvas_w = int(canvas_h), int(canvas_w)
    if len(sizes) != len(offsets):
        raise ValueError(f"pnet_pyramid: {len(sizes)} sizes but {len(offsets)} offsets")
    if (sizes < 1).any() or (offsets < 0).any() or (offsets + sizes > [canvas_h, canvas_w]).any():
        raise ValueError(f"pnet_pyramid: levels {sizes.tolist()} at {offsets.tolist()} must lie in the "
                         f"{canvas_h}x{canvas_w} canvas")
    height, width = int(frames.shape[1]), int(frames.shape[2])
    levels = np.ascontiguousarray(np.concatenate([offsets, sizes], axis=1), np.int32)
    # cv::resize: inv_scale = (double)dsize / ssize, scale = 1. / inv_scale
    scales = np.array([[1.0 / (h / height), 1.0 / (w / width)] for h, w in sizes.tolist()], np.float64).reshape(-1, 2)
    return PyramidArgs(frames, levels, scales, (int(frames.shape[0]), 3, canvas_h, canvas_w))


@on_device
def pnet_pyramid(backend, frames, sizes, offsets, canvas_h: int, canvas_w: int):
    """PNet's input mosaics of a batch of frames, every pyramid level resized in one launch.

    Port of the pyramid loop of FaceDetectorMTCNN::DetectFaces, FaceDetectorMTCNN.cpp.

    Parameters
    ----------
    backend : gpuau.device.Backend
        ``cuda`` or ``emulated``.
    frames, sizes, offsets, canvas_h, canvas_w
        As :func:`gpuau.cpu.pnet_pyramid.pnet_pyramid` (``frames`` on ``backend``'s device).

    Returns
    -------
    (B, 3, canvas_h, canvas_w) float32 on ``backend``'s device
    """
    xp = backend.xp
    args = check_pyramid_args(xp, frames, sizes, offsets, canvas_h, canvas_w)
    b, _, canvas_h, canvas_w = args.out_shape
    out = xp.empty(args.out_shape, np.float32)
    if b == 0 or out.size == 0:
        return out
    if b > MAX_GRID_Z:
        return xp.concatenate([pnet_pyramid(backend, args.frames[i:i + MAX_GRID_Z], sizes, offsets, canvas_h, canvas_w)
                               for i in range(0, b, MAX_GRID_Z)])
    kernel = "pnet_pyramid_u8" if args.frames.dtype == np.uint8 else "pnet_pyramid_f32"
    i32 = np.int32
    grid = (-(-canvas_w // BLOCK[0]), -(-canvas_h // BLOCK[1]), b)
    backend.load_module("pyramid").get_function(kernel)(
        grid, BLOCK,
        (args.frames, i32(args.frames.shape[1]), i32(args.frames.shape[2]), xp.asarray(args.levels),
         xp.asarray(args.scales), i32(len(args.levels)), i32(canvas_h), i32(canvas_w), out))
    return out
