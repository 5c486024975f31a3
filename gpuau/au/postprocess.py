"""Offline correction of a whole video's AU predictions, as FeatureExtraction applies it at the end.

Port of ``FaceAnalyser::ExtractAllPredictionsOfflineReg`` and ``ExtractAllPredictionsOfflineClass``
(FaceAnalyser.cpp).
"""
from __future__ import annotations

import numpy as np

INTENSITY_WINDOW = 3
"""Moving-average window over intensities."""
PRESENCE_WINDOW = 7
"""Moving-average window over presence, thresholded at 0.5."""


def neutral_offsets(intensities: np.ndarray, success: np.ndarray, cutoff: np.ndarray) -> np.ndarray:
    """Per-AU neutral level: the ``cutoff`` quantile of the person's intensities on tracked frames.

    Parameters
    ----------
    intensities : (N, K) float64
        Raw per-frame intensities.
    success : (N,) bool
    cutoff : (K,) float64
        -1 for AUs without person calibration (static models).

    Returns
    -------
    (K,) float64
        0 where ``cutoff`` is -1 or no frame succeeded.
    """
    good = np.sort(intensities[np.asarray(success, bool)], axis=0)
    offsets = np.zeros(intensities.shape[1])
    if good.shape[0] == 0:
        return offsets
    for k, c in enumerate(cutoff):
        if c != -1:
            offsets[k] = good[int(good.shape[0] * c), k]
    return offsets


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0; the first and last ``window // 2`` rows are unchanged.

    Parameters
    ----------
    values : (N, K) float64
    window : int (odd)

    Returns
    -------
    (N, K) float64
    """
    half = (window - 1) // 2
    out = values.copy()
    n = values.shape[0]
    if n > 2 * half:
        # summed in window order as OpenFace does
        sums = sum(values[w : n - 2 * half + w] for w in range(window))
        out[half : n - half] = sums / window
    return out


def postprocess_intensities(intensities: np.ndarray, success: np.ndarray, cutoff: np.ndarray, dynamic: bool = True) -> np.ndarray:
    """Person calibration, clipping to [0, 5] and 3-frame smoothing of AU intensities.

    Parameters
    ----------
    intensities : (N, K) float64
        Raw per-frame intensities (0 on failed frames).
    success : (N,) bool
    cutoff : (K,) float64
    dynamic : bool
        Apply the neutral offsets (FeatureExtraction's dynamic models).

    Returns
    -------
    (N, K) float64
    """
    success = np.asarray(success, bool)
    offsets = neutral_offsets(intensities, success, cutoff) if dynamic else np.zeros(intensities.shape[1])
    out = np.where(success[:, None], np.clip(intensities - offsets, 0.0, 5.0), 0.0)
    return moving_average(out, INTENSITY_WINDOW)


def postprocess_presence(presence: np.ndarray) -> np.ndarray:
    """7-frame majority smoothing of AU presence.

    Parameters
    ----------
    presence : (N, K) float64
        Per-frame 0/1 (0 on failed frames).

    Returns
    -------
    (N, K) float64
    """
    smoothed = moving_average(presence, PRESENCE_WINDOW)
    half = (PRESENCE_WINDOW - 1) // 2
    n = presence.shape[0]
    if n > 2 * half:
        mid = smoothed[half : n - half]
        smoothed[half : n - half] = np.where(mid < 0.5, 0.0, 1.0)
    return smoothed
