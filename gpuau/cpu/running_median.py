"""Running medians of per-dimension histograms (the person's neutral face in the AU stage), Numba.

The median bin of a row is the first bin where the cumulative count reaches ``cutoff``.  Adding
one value per row and moving the cut-off by at most one per update moves that bin by a few bins,
so the bin is tracked incrementally (with the count strictly below it) instead of rescanning
1000 or 10000 bins per row.  Same result as the scan in ``FaceAnalyser::UpdateRunningMedian``
(FaceAnalyser.cpp).  Twin of ``gpuau/kernels/running_median.cu``: the same double arithmetic in the
same order, so both give the same bits.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from gpuau.kernels.running_median import check_running_median_args


@nb.njit(cache=True, nogil=True)
def _update_stream(histogram, median_bin, below, median, descriptor, count, add, min_val, max_val, nonnegative):
    num_bins = histogram.shape[1]
    length = abs(max_val - min_val)
    width = length / float(num_bins)
    half = 0.5 * length / float(num_bins)
    cutoff = (count + 1) // 2
    for i in range(histogram.shape[0]):
        x = descriptor[i]
        j = median_bin[i]
        n = below[i]
        if add:
            c = (x - min_val) * float(num_bins) / length
            if c > num_bins - 1:
                c = float(num_bins - 1)
            if not c >= 0.0:  # a NaN too (its bin would be int(NaN))
                c = 0.0
            b = int(c)
            histogram[i, b] += 1
            if b < j:
                n += 1
        if cutoff <= 0:
            j = 0
            n = 0
        else:
            while j > 0 and n >= cutoff:  # the bins below already hold the cut-off: move left
                j -= 1
                n -= histogram[i, j]
            while n + histogram[i, j] < cutoff:  # bin j does not reach it yet: move right
                n += histogram[i, j]
                j += 1
        median_bin[i] = j
        below[i] = n
        # one descriptor counted: OpenFace's median is the current descriptor (even when not added)
        m = x if count == 1 else min_val + j * width + half
        if nonnegative and m < 0.0:
            m = 0.0
        median[i] = m


def running_median_update(histograms, median_bins, belows, medians, descriptors, counts, add, num_bins: int,
                          min_val: float, max_val: float, nonnegative: bool = False) -> None:
    """Count one descriptor per stream (where ``add``) and read every stream's median.

    Port of ``FaceAnalyser::UpdateRunningMedian`` (FaceAnalyser.cpp), over S streams' states.  With
    no descriptor counted the median is the centre of the first bin; with one, the current
    descriptor (even when not added); values outside ``[min_val, max_val]`` count in the end bins.

    Parameters
    ----------
    histograms : list of S (D, num_bins) int32, updated in place
    median_bins : list of S (D,) int32, updated in place
        First bin whose cumulative count reaches ``(count + 1) // 2``.
    belows : list of S (D,) int32, updated in place
        Count in the bins before ``median_bin``.
    medians : list of S (D,) float64, written
    descriptors : (S, D) float
        This frame's descriptor of each stream.
    counts : (S,) int
        Descriptors each stream has counted, this one included.
    add : (S,) bool
        Count this descriptor (OpenFace counts frames where tracking succeeded).
    num_bins : int
    min_val, max_val : float
    nonnegative : bool
        Clamp negative medians to 0 (OpenFace does for the FHOG median).
    """
    args = check_running_median_args(np, histograms, median_bins, belows, medians, descriptors, counts, add, num_bins)
    for k in range(len(args.histograms)):
        _update_stream(args.histograms[k], args.median_bins[k], args.belows[k], args.medians[k], args.descriptors[k],
                       int(args.counts[k]), bool(args.add[k]), float(min_val), float(max_val), bool(nonnegative))
