"""GPU-path wrapper of the batched running-median kernel in ``running_median.cu`` (CUDA or the CPU emulator).

Every stream keeps its own histograms (:class:`gpuau.au.running_median.RunningMedian`), so one launch
reaches S streams through tables of their arrays' device addresses (the pointer-array convention of
cuBLAS' batched routines).  Port of ``FaceAnalyser::UpdateRunningMedian`` (FaceAnalyser.cpp); same
arguments and effect as :func:`gpuau.cpu.running_median.running_median_update`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gpuau.kernels.loader import contiguous, on_device

BLOCK = 128
"""Threads per block: one thread per descriptor dimension, blocks along x, streams along y."""
MAX_GRID_Y = 65535


class RunningMedianArgs(NamedTuple):
    """Validated arguments of :func:`running_median_update` (arrays on the caller's device)."""

    histograms: list  # S x (D, num_bins) int32, C-contiguous
    median_bins: list  # S x (D,) int32
    belows: list  # S x (D,) int32
    medians: list  # S x (D,) float64
    descriptors: object  # (S, D) float64, C-contiguous
    counts: np.ndarray  # (S,) int32, host
    add: np.ndarray  # (S,) bool, host


def check_running_median_args(xp, histograms, median_bins, belows, medians, descriptors, counts, add,
                              num_bins: int) -> RunningMedianArgs:
    """Validate :func:`running_median_update`'s arguments for array module ``xp``.

    Shared by the kernel wrapper and the Numba twin (:mod:`gpuau.cpu.running_median`).  The state
    arrays are updated in place, so they must already have their dtype and be C-contiguous.
    """
    s = len(histograms)
    if not (len(median_bins) == len(belows) == len(medians) == s):
        raise ValueError("running_median_update: one histogram, median bin, count below and median per stream")
    descriptors = contiguous(xp, descriptors, np.float64)
    if descriptors.ndim != 2 or descriptors.shape[0] != s:
        raise ValueError(f"running_median_update: descriptors must be (S, D) with S = {s}, got {descriptors.shape}")
    d = descriptors.shape[1]
    for name, arrays, dtype, shape in (("histogram", histograms, np.int32, (d, num_bins)),
                                       ("median_bin", median_bins, np.int32, (d,)),
                                       ("below", belows, np.int32, (d,)),
                                       ("median", medians, np.float64, (d,))):
        for a in arrays:
            if not isinstance(a, xp.ndarray) or a.dtype != dtype or a.shape != shape or not a.flags.c_contiguous:
                raise TypeError(f"running_median_update: each {name} must be a C-contiguous {np.dtype(dtype)} "
                                f"{shape} array of the backend, got {type(a).__name__} {getattr(a, 'shape', '')}")
    counts = np.asarray(counts, np.int32).reshape(-1)
    add = np.asarray(add, bool).reshape(-1)
    if counts.shape != (s,) or add.shape != (s,):
        raise ValueError(f"running_median_update: counts and add must be ({s},)")
    if (counts < add).any():
        raise ValueError("running_median_update: a stream's count must include the descriptor it adds")
    return RunningMedianArgs(list(histograms), list(median_bins), list(belows), list(medians), descriptors, counts, add)


def _addresses(xp, arrays):
    """(S,) uint64 table of the arrays' data addresses, on ``xp``'s device."""
    return xp.asarray(np.array([a.data.ptr for a in arrays], np.uint64))


@on_device
def running_median_update(backend, histograms, median_bins, belows, medians, descriptors, counts, add,
                          num_bins: int, min_val: float, max_val: float, nonnegative: bool = False) -> None:
    """Count one descriptor per stream (where ``add``) and read every stream's median, in one launch.

    Port of ``FaceAnalyser::UpdateRunningMedian`` (FaceAnalyser.cpp), batched over streams.

    Parameters
    ----------
    backend : gpuau.device.Backend
        ``cuda`` or ``emulated``.
    histograms, median_bins, belows, medians, descriptors, counts, add, num_bins, min_val, max_val, nonnegative
        As :func:`gpuau.cpu.running_median.running_median_update` (state arrays on ``backend``'s device,
        updated in place).
    """
    xp = backend.xp
    args = check_running_median_args(xp, histograms, median_bins, belows, medians, descriptors, counts, add, num_bins)
    if backend.is_gpu:  # the kernel reads the state through a table of raw addresses, which CuPy cannot check
        for a in (*args.histograms, *args.median_bins, *args.belows, *args.medians):
            if a.device.id != backend.device_id:
                raise ValueError(f"running_median_update: a stream's state is on cuda:{a.device.id}, the backend is "
                                 f"{backend.spec}")
    s, d = args.descriptors.shape
    if s == 0 or d == 0:
        return
    if s > MAX_GRID_Y:
        raise ValueError(f"running_median_update: at most {MAX_GRID_Y} streams per launch, got {s}")
    grid = (-(-d // BLOCK), s, 1)
    backend.load_module("running_median").get_function("running_median_update")(
        grid,
        (BLOCK, 1, 1),
        (
            _addresses(xp, args.histograms), _addresses(xp, args.median_bins), _addresses(xp, args.belows),
            _addresses(xp, args.medians), args.descriptors, xp.asarray(args.counts),
            xp.asarray(args.add.astype(np.int32)), np.int32(s), np.int32(d), np.int32(num_bins),
            np.float64(min_val), np.float64(max_val), np.int32(bool(nonnegative)),
        ),
    )
