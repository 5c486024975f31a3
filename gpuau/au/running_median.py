"""Histogram-based running median of per-frame descriptors (the person's neutral face).

The state of one stream (:class:`RunningMedian`) lives on the backend's device; one call of
:func:`update_running_medians` updates the states of many streams (one kernel launch on the GPU
backends).  Port of ``FaceAnalyser::UpdateRunningMedian`` (FaceAnalyser.cpp).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gpuau.device import resolve_device

HOG_BINS, HOG_MIN, HOG_MAX = 1000, -0.005, 1.0
"""Histogram of the FHOG median (``num_bins_hog``, ``min_val_hog``, ``max_val_hog``)."""
GEOM_BINS, GEOM_MIN, GEOM_MAX = 10000, -60.0, 60.0
"""Histogram of the geometry median (``num_bins_geom``, ``min_val_geom``, ``max_val_geom``)."""


@dataclass(eq=False)
class RunningMedian:
    """Per-dimension histogram of one stream's descriptor values and the median read from it.

    Attributes
    ----------
    num_bins : int
    min_val, max_val : float
        Values outside are counted in the first / last bin.
    nonnegative : bool
        Negative medians read as 0 (OpenFace's FHOG median).
    histogram : (D, num_bins) int32 or None
        On the backend's device; created by the first update.
    count : int
        Number of descriptors counted.
    median : (D,) float64 or None
        On the backend's device.
    median_bin, below : (D,) int32 or None
        Median bin of each row and the count below it (tracked incrementally).
    """

    num_bins: int
    min_val: float
    max_val: float
    nonnegative: bool = False
    histogram: "object | None" = field(default=None, repr=False)
    count: int = 0
    median: "object | None" = field(default=None, repr=False)
    median_bin: "object | None" = field(default=None, repr=False)
    below: "object | None" = field(default=None, repr=False)

    def update(self, descriptor, add: bool, device="cpu"):
        """Optionally count a descriptor, then recompute the median (:func:`update_running_medians` of one stream).

        Parameters
        ----------
        descriptor : (D,) float
        add : bool
            Count this descriptor (OpenFace counts only frames where tracking succeeded).
        device : str or Backend
            Where the state lives.

        Returns
        -------
        (D,) float64
            The median (also kept in ``self.median``), on the device.
        """
        backend = resolve_device(device)
        update_running_medians([self], backend.xp.asarray(descriptor)[None], [add], backend)
        return self.median


def state_bytes(dimensions: int, num_bins: int) -> int:
    """Memory of one stream's :class:`RunningMedian` of ``dimensions`` values: histogram, median bins,
    counts below, medians."""
    return dimensions * (num_bins * 4 + 4 + 4 + 8)


def update_running_medians(states: "list[RunningMedian]", descriptors, add, device="cpu") -> None:
    """Update the running medians of S streams with one descriptor each, in one batch.

    Port of ``FaceAnalyser::UpdateRunningMedian`` (FaceAnalyser.cpp): where ``add``, the descriptor
    is counted in its stream's histogram; then every stream's median is read.  With no descriptor
    counted the median is the centre of the first bin; with one, the current descriptor (even when
    not added).

    Parameters
    ----------
    states : list of S RunningMedian
        Same ``num_bins``, range and ``nonnegative`` (one descriptor kind); updated in place.
    descriptors : (S, D) float, on the device
    add : (S,) bool
    device : str or Backend
        ``backend.kernels.running_median_update`` runs the update (Numba on ``cpu``,
        ``running_median.cu`` on ``cuda`` / ``emulated``).
    """
    if not states:
        return
    backend = resolve_device(device)
    xp = backend.xp
    first = states[0]
    kind = (first.num_bins, first.min_val, first.max_val, first.nonnegative)
    add = np.asarray(add, bool).reshape(-1)
    d = descriptors.shape[1]
    for state, a in zip(states, add):
        if (state.num_bins, state.min_val, state.max_val, state.nonnegative) != kind:
            raise ValueError("update_running_medians: states of different histograms in one batch")
        if state.histogram is None:
            state.histogram = xp.zeros((d, state.num_bins), np.int32)
            state.median_bin = xp.zeros(d, np.int32)
            state.below = xp.zeros(d, np.int32)
            state.median = xp.zeros(d, np.float64)
        state.count += bool(a)
    backend.kernels.running_median_update(
        [s.histogram for s in states], [s.median_bin for s in states], [s.below for s in states],
        [s.median for s in states], descriptors, [s.count for s in states], add, first.num_bins, first.min_val,
        first.max_val, first.nonnegative)
