"""PNet's input mosaic on the CPU, and the Numba twin of ``pyramid.cu``.

Port of the pyramid loop of FaceDetectorMTCNN::DetectFaces, FaceDetectorMTCNN.cpp: each level is
``cv::resize(frame_float, level_size, INTER_LINEAR)``, normalised ``(v - 127.5) * 0.0078125`` and
stored as RGB planes in the level's place in the canvas.

The Numba twin is also the ``cpu`` backend's implementation: it takes 0.1-0.9 of the time of the
``cv2.resize`` loop it replaces (1 to 16 frames of 640x480 and 1920x1080; no float copy of the
frame, no normalise and transpose passes; ``python -m benchmarks.bench_pnet_pyramid``).  cv::resize's float INTER_LINEAR, as the OpenCV 4.10 and
5.0 x86-64 wheels compute it (bit for bit, checked on pyramid, 2x and upscaling sizes):

* destination column ``d`` of a level ``w`` wide cut from a frame ``W`` wide maps to
  ``t = (d + 0.5) * (1. / (w / W)) - 0.5`` (double); ``s = floor(t)``, weight ``a = (float)(t - s)``;
  ``s < 0`` -> ``(0, 0)``, ``s >= W - 1`` -> ``(W - 1, 0)``; rows likewise;
* each of the two rows is interpolated along x as ``fmaf(p[s + 1] - p[s], a, p[s])`` in float32,
  then the two results along y the same way.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from gpuau.cpu.fp import fmaf
from gpuau.kernels.pnet_pyramid import PAD, check_pyramid_args

_F = np.float32
_MEAN, _SCALE = _F(127.5), _F(0.0078125)


@nb.njit(cache=True, nogil=True, inline="always")
def _tap(d, scale, n):
    """Source index and float32 weight of destination coordinate ``d`` on an axis of ``n`` pixels."""
    t = (d + 0.5) * scale - 0.5
    s = math.floor(t)
    a = np.float32(t - s)
    i = np.int64(s)
    if i < 0:
        i, a = np.int64(0), np.float32(0)
    if i >= n - 1:
        i, a = np.int64(n - 1), np.float32(0)
    return i, a


@nb.njit(cache=True, nogil=True, inline="always")
def _lerp(p0, p1, a):
    return fmaf(p1 - p0, a, p0)


@nb.njit(cache=True, nogil=True)
def _pyramid(frames, levels, scales, out):
    # frames (B, H, W, 3); levels (L, 4) y0, x0, h, w; scales (L, 2); out (B, 3, Hc, Wc) pre-filled with PAD
    n_frames, height, width = frames.shape[:3]
    for b in range(n_frames):
        frame = frames[b]
        for l in range(levels.shape[0]):
            y0, x0, h, w = levels[l, 0], levels[l, 1], levels[l, 2], levels[l, 3]
            xs = np.empty(w, np.int64)
            ax = np.empty(w, np.float32)
            for x in range(w):
                xs[x], ax[x] = _tap(x, scales[l, 1], width)
            for y in range(h):
                sy, ay = _tap(y, scales[l, 0], height)
                sy1 = min(sy + 1, height - 1)
                for x in range(w):
                    sx = xs[x]
                    sx1 = min(sx + 1, width - 1)
                    for c in range(3):
                        h0 = _lerp(np.float32(frame[sy, sx, c]), np.float32(frame[sy, sx1, c]), ax[x])
                        h1 = _lerp(np.float32(frame[sy1, sx, c]), np.float32(frame[sy1, sx1, c]), ax[x])
                        v = _lerp(h0, h1, ay)
                        out[b, 2 - c, y0 + y, x0 + x] = (v - _MEAN) * _SCALE


def pnet_pyramid(frames, sizes, offsets, canvas_h: int, canvas_w: int) -> np.ndarray:
    """PNet's input mosaics of a batch of frames: every pyramid level of a frame in one canvas.

    Port of the pyramid loop of FaceDetectorMTCNN::DetectFaces, FaceDetectorMTCNN.cpp
    (``cv::resize`` of the float frame, INTER_LINEAR, written out as in the module docstring).
    Twin of ``pnet_pyramid_*`` in ``pyramid.cu``; serial, the GIL released.

    Parameters
    ----------
    frames : (B, H, W, 3) BGR, uint8 or float32 (other real dtypes are converted to float32)
    sizes : (L, 2) int
        ``(height, width)`` of each level.
    offsets : (L, 2) int
        ``(y, x)`` of each level's top-left pixel in the canvas (levels must not overlap).
    canvas_h, canvas_w : int

    Returns
    -------
    (B, 3, canvas_h, canvas_w) float32
        RGB planes ``(v - 127.5) * 0.0078125``; pixels outside every level hold the value of a zero
        pixel, ``-0.99609375``.
    """
    args = check_pyramid_args(np, frames, sizes, offsets, canvas_h, canvas_w)
    out = np.full(args.out_shape, PAD, np.float32)
    _pyramid(args.frames, args.levels, args.scales, out)
    return out
