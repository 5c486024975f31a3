"""Median bins of per-dimension histograms (the running medians of the AU stage), Numba.

Port of the median scan in ``FaceAnalyser::UpdateRunningMedian``, FaceAnalyser.cpp.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def _median_bins(histogram, cutoff, out):
    for i in range(histogram.shape[0]):
        acc = 0
        for j in range(histogram.shape[1]):
            acc += histogram[i, j]
            if acc >= cutoff:
                out[i] = j
                break


def histogram_median(histogram: np.ndarray, cutoff: int) -> np.ndarray:
    """First bin of each row where the cumulative count reaches ``cutoff``.

    Parameters
    ----------
    histogram : (D, B) int32
    cutoff : int

    Returns
    -------
    (D,) int32
        Bin index; 0 for a row that never reaches the cutoff.
    """
    out = np.zeros(histogram.shape[0], np.int32)
    _median_bins(np.ascontiguousarray(histogram), int(cutoff), out)
    return out
