"""Geometry features of the AU predictors: the non-rigid PDM shape offset and its parameters.

Port of the ``geom_descriptor_frame`` construction in ``FaceAnalyser::AddNextFrame`` (FaceAnalyser.cpp).
"""
from __future__ import annotations

import numpy as np

GEOMETRY_SIZE = 238
"""204 shape offsets (68 x, 68 y, 68 z) + 34 local parameters."""


def geometry_descriptor(princ_comp: np.ndarray, params_local: np.ndarray) -> np.ndarray:
    """``[princ_comp @ p_local, p_local]`` in float64.

    Parameters
    ----------
    princ_comp : (204, 34) float32
        PDM principal components.
    params_local : (34,) or (N, 34) float
        Local PDM parameters (zeros for frames where tracking failed).

    Returns
    -------
    (238,) or (N, 238) float64
    """
    p = np.asarray(params_local, np.float32).astype(np.float64)
    pc = np.asarray(princ_comp, np.float32).astype(np.float64)
    # mode by mode, so a face's result does not depend on the batch it is in (BLAS would)
    locs = np.zeros(p.shape[:-1] + (pc.shape[0],))
    for k in range(pc.shape[1]):
        locs += p[..., k, None] * pc[:, k]
    return np.concatenate([locs, p], axis=-1)
