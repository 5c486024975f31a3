"""running_median_update on every backend: the streams' histograms, median bins and medians equal the
Numba twin's bit for bit, on real FHOG and geometry descriptors of default.wmv, and the medians equal
OpenFace's full scan of the histograms."""
import numpy as np
import pytest

from au_harness import reference_landmarks
from backends import assert_backend_close, devices_only
from gpuau.au import AUAnalyzer
from gpuau.au.analyzer import face_features
from gpuau.au.running_median import (GEOM_BINS, GEOM_MAX, GEOM_MIN, HOG_BINS, HOG_MAX, HOG_MIN, RunningMedian,
                                     update_running_medians)
from gpuau.device import resolve_device
from media import read_frames
from reference import read_reference

FRAMES = 24


@pytest.fixture(scope="module")
def descriptors(media_dir, reference_dir):
    """FHOG (float32) and geometry (float64) descriptors of the first frames of default.wmv."""
    df = read_reference(reference_dir / "default.csv", nrows=FRAMES)
    an = AUAnalyzer()
    return face_features(np.stack(read_frames(media_dir / "default.wmv", FRAMES)), reference_landmarks(df), an.pdm,
                         an.triangulation)


def run_streams(device, rows, kind, steps):
    """Three streams fed different descriptor sequences (some not counted), updated together each step."""
    num_bins, lo, hi, nonnegative = kind
    states = [RunningMedian(num_bins, lo, hi, nonnegative) for _ in range(3)]
    xp = resolve_device(device).xp
    medians = []
    for order, add in steps:
        update_running_medians(states, xp.asarray(rows[order]), add, device)
        medians.append([s.median.copy() for s in states])
    return states, medians


@devices_only
@pytest.mark.parametrize("kind", ["hog", "geometry"])
def test_running_median_update_equals_twin(backend, descriptors, kind):
    rows = descriptors[0] if kind == "hog" else descriptors[1]
    spec = (HOG_BINS, HOG_MIN, HOG_MAX, True) if kind == "hog" else (GEOM_BINS, GEOM_MIN, GEOM_MAX, False)
    if kind == "geometry":  # spread the values over the range and past both ends
        rows = np.concatenate([rows, rows * 8.0, rows[:4] * 1e3])
    rng = np.random.default_rng(3)
    steps = [(rng.integers(0, len(rows), 3), rng.random(3) > 0.25) for _ in range(40)]
    steps[0] = (steps[0][0], np.array([False, True, False]))  # nothing counted yet: first bin's centre
    expected, expected_medians = run_streams("cpu", rows, spec, steps)
    actual, actual_medians = run_streams(backend, rows, spec, steps)
    for e, a in zip(expected, actual):
        assert a.count == e.count
        assert_backend_close(backend, a.histogram, e.histogram, exact=True)
        assert_backend_close(backend, a.median_bin, e.median_bin, exact=True)
        assert_backend_close(backend, a.below, e.below, exact=True)
    for e_step, a_step in zip(expected_medians, actual_medians):
        for e, a in zip(e_step, a_step):
            assert_backend_close(backend, a, e, exact=True)
    # the twin against OpenFace's scan: first bin whose cumulative count reaches (count + 1) // 2
    num_bins, lo, hi, nonnegative = spec
    for e in expected:
        if e.count > 1:
            scan = (np.cumsum(e.histogram, axis=1) >= (e.count + 1) // 2).argmax(axis=1)
            np.testing.assert_array_equal(e.median_bin, scan)
            median = lo + scan * ((hi - lo) / num_bins) + 0.5 * (hi - lo) / num_bins
            np.testing.assert_array_equal(e.median, np.maximum(median, 0.0) if nonnegative else median)


def test_running_median_update_checks_arguments(backend):
    xp = backend.xp
    state = RunningMedian(10, 0.0, 1.0)
    update_running_medians([state], xp.zeros((1, 4)), [True], backend)
    with pytest.raises(ValueError, match="include"):  # a count that does not include the added descriptor
        backend.kernels.running_median_update([state.histogram], [state.median_bin], [state.below], [state.median],
                                              xp.zeros((1, 4)), [0], [True], 10, 0.0, 1.0)
    with pytest.raises(TypeError, match="histogram"):
        backend.kernels.running_median_update([state.histogram.astype(np.int64)], [state.median_bin], [state.below],
                                              [state.median], xp.zeros((1, 4)), [2], [True], 10, 0.0, 1.0)
    with pytest.raises(ValueError, match="different histograms"):
        update_running_medians([state, RunningMedian(20, 0.0, 1.0)], xp.zeros((2, 4)), [True, True], backend)


def test_a_nan_value_is_counted_in_the_first_bin_on_every_backend(backend):
    """A NaN compared false with both ends, so its bin was (int)NaN: INT_MIN on a CPU (a write outside the histogram:
    the emulated kernel crashed, the twin counted it in another dimension's row), 0 on a GPU."""
    state = RunningMedian(GEOM_BINS, GEOM_MIN, GEOM_MAX)
    xp = resolve_device(backend).xp
    update_running_medians([state], xp.asarray(np.array([[np.nan, 0.0, GEOM_MAX]])), np.array([True]), backend)
    histogram = np.asarray(resolve_device(backend).asnumpy(state.histogram))
    assert histogram.sum(axis=1).tolist() == [1, 1, 1] and histogram[0, 0] == 1
