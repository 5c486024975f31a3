"""Running medians (their ranges, and when an analyzer updates them) and the offline post-processing of AU predictions."""
from __future__ import annotations

import numpy as np
import pytest

from gpuau.au import AUAnalyzer
from gpuau.au import analyzer as analyzer_module
from gpuau.au.analyzer import HOG_SIZE
from gpuau.au.postprocess import moving_average, neutral_offsets, postprocess_intensities, postprocess_presence
from gpuau.au.running_median import GEOM_BINS, GEOM_MAX, GEOM_MIN, HOG_BINS, HOG_MAX, HOG_MIN, RunningMedian
from gpuau.features.geometry import GEOMETRY_SIZE


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


def test_histogram_ranges_are_face_analysers():
    """FaceAnalyser's num_bins_hog / min_val_hog / max_val_hog and its geometry's: the median's resolution (a bin of
    0.001 for FHOG, 0.012 for geometry) is part of every dynamic AU value."""
    assert (HOG_BINS, HOG_MIN, HOG_MAX) == (1000, -0.005, 1.0) and (GEOM_BINS, GEOM_MIN, GEOM_MAX) == (10000, -60.0, 60.0)
    rm = RunningMedian(GEOM_BINS, GEOM_MIN, GEOM_MAX)
    for v in (0.0, 0.05, 0.1):
        rm.update(np.array([v]), True)
    np.testing.assert_allclose(rm.median, [0.054], rtol=0, atol=1e-9)  # the centre of bin 5004, where 0.05 falls


def _feed(analyzer, success) -> None:
    """Random descriptors for the tracked frames of ``success``, zeros for the others, added one frame at a time."""
    rng = np.random.default_rng(0)
    for ok in success:
        hog = rng.uniform(0, 0.3, HOG_SIZE) if ok else np.zeros(HOG_SIZE)
        geometry = rng.normal(0, 5, GEOMETRY_SIZE) if ok else np.zeros(GEOMETRY_SIZE)
        analyzer.add_features(hog, geometry, bool(ok), online=False)


def test_medians_take_every_other_frame_when_tracked(models_dir):
    """FaceAnalyser updates the running medians on the 1st, 3rd, 5th... frame of a video, and adds a frame's
    descriptors only where it was tracked; before any is added the FHOG median is 0, not the first bin's centre
    (-0.0045)."""
    analyzer = AUAnalyzer(models_dir)
    _feed(analyzer, [False])
    assert analyzer.hog_median.median.min() == 0.0
    _feed(analyzer, [True] * 4)  # frames 0-4: updates on 0, 2, 4, of which 2 and 4 tracked
    assert analyzer.hog_median.count == analyzer.geometry_median.count == 2
    analyzer = AUAnalyzer(models_dir)
    _feed(analyzer, [False, True, True, True, False, True, True])  # updates on frames 0, 2, 4, 6: F, T, F, T
    assert analyzer.hog_median.count == analyzer.geometry_median.count == 2
    assert analyzer.hog_median.histogram.sum(axis=1).max() == 2


def test_the_first_max_init_frames_tracked_frames_are_repredicted(models_dir, monkeypatch):
    """The offline pass re-predicts exactly the first MAX_INIT_FRAMES (3000) tracked frames with the final medians
    (FaceAnalyser's ``frames_tracking_succ - 1 < max_init_frames``)."""
    monkeypatch.setattr(analyzer_module, "MAX_INIT_FRAMES", 4)
    analyzer = AUAnalyzer(models_dir)
    _feed(analyzer, [False, True, True, True, True, True, True])
    assert analyzer._init_frames == [1, 2, 3, 4]


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
    # intensities above OpenFace's scale are clipped to 5 (no reference video reaches it)
    assert postprocess_intensities(np.full((4, 1), 7.0), np.ones(4, bool), np.array([-1.0])).tolist() == [[5.0]] * 4


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
