"""Running medians and the offline post-processing of AU predictions."""
from __future__ import annotations

import numpy as np
import pytest

from gpuau.au.postprocess import moving_average, neutral_offsets, postprocess_intensities, postprocess_presence
from gpuau.au.running_median import GEOM_BINS, GEOM_MAX, GEOM_MIN, HOG_BINS, HOG_MAX, HOG_MIN, RunningMedian


def test_running_median_is_the_histogram_median():
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 0.5, (41, 300))
    rm = RunningMedian(HOG_BINS, HOG_MIN, HOG_MAX)
    for row in data:
        rm.update(row, True)
    width = (HOG_MAX - HOG_MIN) / HOG_BINS
    kth = np.sort(data, 0)[(41 + 1) // 2 - 1]  # the value whose bin reaches the cut-off
    want_bin = np.floor((kth - HOG_MIN) * HOG_BINS / (HOG_MAX - HOG_MIN))
    np.testing.assert_allclose(rm.median, HOG_MIN + want_bin * width + 0.5 * width, rtol=0, atol=1e-12)
    assert np.abs(rm.median - np.median(data, 0)).max() < 2 * width + np.abs(np.diff(np.sort(data, 0), axis=0)).max()


def test_running_median_edge_cases_as_openface():
    rm = RunningMedian(10, 0.0, 1.0)
    # first call without adding: nothing counted, the median is the first bin's centre
    np.testing.assert_allclose(rm.update(np.array([0.9, 0.3]), False), [0.05, 0.05])
    # one descriptor counted: the median is the *current* descriptor, even when not added
    rm.update(np.array([0.33, 0.77]), True)
    np.testing.assert_allclose(rm.update(np.array([0.5, 0.6]), False), [0.5, 0.6])
    # values outside the range fall in the end bins
    rm.update(np.array([5.0, -3.0]), True)
    np.testing.assert_allclose(rm.median, [0.35, 0.05])
    assert rm.count == 2 and rm.histogram.sum() == 4


def test_neutral_offsets_and_intensities():
    vals = np.array([[0.5, 1.0], [1.5, 2.0], [9.0, 9.0], [2.5, 3.0], [3.5, 4.0]])
    success = np.array([True, True, False, True, True])
    off = neutral_offsets(vals, success, np.array([0.5, -1]))
    assert off.tolist() == [2.5, 0.0]  # sorted good values [0.5, 1.5, 2.5, 3.5][int(4 * 0.5)]
    out = postprocess_intensities(vals, success, np.array([0.5, -1]))
    clipped = np.array([[0, 1.0], [0, 2.0], [0, 0], [0, 3.0], [1.0, 4.0]])
    np.testing.assert_allclose(out[0], clipped[0])
    np.testing.assert_allclose(out[-1], clipped[-1])
    np.testing.assert_allclose(out[1:-1], (clipped[:-2] + clipped[1:-1] + clipped[2:]) / 3)
    # static models: no offsets, clipping only
    np.testing.assert_allclose(postprocess_intensities(vals, success, np.array([0.5, -1]), dynamic=False)[0], [0.5, 1.0])


def test_presence_smoothing():
    p = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1, 0], float)[:, None]
    out = postprocess_presence(p)[:, 0]
    assert out[:3].tolist() == [1, 0, 1] and out[-3:].tolist() == [1, 1, 0]  # ends untouched
    assert out[3:7].tolist() == [0.0, 0.0, 1.0, 0.0]  # window sums 3/7, 3/7, 4/7, 3/7
    assert moving_average(np.ones((2, 1)), 3).tolist() == [[1.0], [1.0]]  # too short: unchanged


@pytest.mark.parametrize("num_bins, lo, hi, scale", [(HOG_BINS, HOG_MIN, HOG_MAX, 0.3), (GEOM_BINS, GEOM_MIN, GEOM_MAX, 20.0)])
def test_incremental_median_equals_full_scan(num_bins, lo, hi, scale):
    """The tracked median bin equals OpenFace's scan of the whole histogram after every update."""
    rng = np.random.default_rng(7)
    rm = RunningMedian(num_bins, lo, hi)
    for step in range(120):
        x = rng.normal(0.1 * scale, scale, 50) + (step > 60) * scale  # drifts, and leaves the range
        rm.update(x, bool(rng.random() > 0.2))
        if rm.count > 1:
            cutoff = (rm.count + 1) // 2
            scan = (np.cumsum(rm.histogram, axis=1) >= cutoff).argmax(axis=1)
            width = (hi - lo) / num_bins
            np.testing.assert_array_equal(rm.median_bin, scan)
            np.testing.assert_allclose(rm.median, lo + scan * width + 0.5 * width, rtol=0, atol=1e-12)
