"""Histogram-based running median of per-frame descriptors (the person's neutral face).

Port of ``FaceAnalyser::UpdateRunningMedian`` (FaceAnalyser.cpp).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gpuau.cpu.histogram_median import histogram_median_update

HOG_BINS, HOG_MIN, HOG_MAX = 1000, -0.005, 1.0
"""Histogram of the FHOG median (``num_bins_hog``, ``min_val_hog``, ``max_val_hog``)."""
GEOM_BINS, GEOM_MIN, GEOM_MAX = 10000, -60.0, 60.0
"""Histogram of the geometry median (``num_bins_geom``, ``min_val_geom``, ``max_val_geom``)."""


@dataclass(eq=False)
class RunningMedian:
    """Per-dimension histogram of descriptor values and the median read from it.

    Attributes
    ----------
    num_bins : int
    min_val, max_val : float
        Values outside are counted in the first / last bin.
    histogram : (D, num_bins) int32 or None
        Created on the first call to :meth:`update`.
    count : int
        Number of descriptors added.
    median : (D,) float64 or None
    median_bin, below : (D,) int32 or None
        Median bin of each row and the count below it (tracked incrementally).
    """

    num_bins: int
    min_val: float
    max_val: float
    histogram: "np.ndarray | None" = field(default=None, repr=False)
    count: int = 0
    median: "np.ndarray | None" = field(default=None, repr=False)
    median_bin: "np.ndarray | None" = field(default=None, repr=False)
    below: "np.ndarray | None" = field(default=None, repr=False)

    def update(self, descriptor: np.ndarray, add: bool) -> np.ndarray:
        """Optionally add a descriptor, then recompute the median.

        As OpenFace: with a single descriptor counted the median is the *current* descriptor (even
        when it was not added), and with none counted it is the centre of the first bin.

        Parameters
        ----------
        descriptor : (D,) float64
        add : bool
            Count this descriptor (OpenFace adds only frames where tracking succeeded).

        Returns
        -------
        (D,) float64
            The median (also kept in ``self.median``).
        """
        descriptor = np.asarray(descriptor, np.float64)
        length = abs(self.max_val - self.min_val)
        if self.histogram is None:
            self.histogram = np.zeros((descriptor.shape[0], self.num_bins), np.int32)
            self.median_bin = np.zeros(descriptor.shape[0], np.int32)
            self.below = np.zeros(descriptor.shape[0], np.int32)
            self.median = descriptor.copy()
        bins = None
        if add:
            converted = (descriptor - self.min_val) * float(self.num_bins) / length
            bins = np.clip(converted, 0, self.num_bins - 1).astype(np.int64)
            self.count += 1
        cutoff = (self.count + 1) // 2
        histogram_median_update(self.histogram, bins, cutoff, self.median_bin, self.below)
        if self.count == 1:
            self.median = descriptor.copy()
        else:
            self.median = self.min_val + self.median_bin * (length / self.num_bins) + 0.5 * length / self.num_bins
        return self.median

