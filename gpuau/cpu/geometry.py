"""The AU predictors' geometry features, Numba (:func:`gpuau.features.geometry.geometry_descriptor`)."""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def geometry_rows(pc, p, out):
    """``out[n] = [pc @ p[n], p[n]]`` of float32 ``pc`` (rows, modes) and ``p`` (N, modes), in float64."""
    # float64 sums mode by mode from 0.0, so a face's result does not depend on the batch it is in (BLAS would)
    rows, modes = pc.shape
    for n in range(p.shape[0]):
        for r in range(rows):
            acc = 0.0
            for k in range(modes):
                acc += np.float64(p[n, k]) * np.float64(pc[r, k])
            out[n, r] = acc
        for k in range(modes):
            out[n, rows + k] = p[n, k]
