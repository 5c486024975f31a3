"""The landmark fit on two cores gives the one-core bits: CCNF response maps split between the
calling thread and the helper thread equal the serial maps, and the hierarchical part models fitted
concurrently equal the parts fitted one after the other (default.wmv frames, OpenFace's parameters
of the previous frame).  A process that used the helper can still fork."""
import multiprocessing

import numpy as np
import pytest

from backends import forks_with_threads, two_cores
from gpuau.cpu import ccnf_response as ccnf_cpu
from gpuau.cpu import threads
from gpuau.landmarks.clnf import detect_landmarks_batch
from gpuau.video import open_source
from real_faces import expert_inputs
from reference import global_params, local_params, read_reference
from test_landmarks_fit import _assert_same_fit

FRAMES = (3, 9)


@pytest.fixture(scope="module")
def frames(media_dir, reference_dir):
    """``[(gray float32 (H, W), params_global (6,), params_local (34,))]``: frame t with OpenFace's
    parameters of frame t - 1 (a tracking step)."""
    df = read_reference(reference_dir / "default.csv", nrows=max(FRAMES) + 1)
    grays = [f.gray for _, f in zip(range(max(FRAMES) + 1), open_source(media_dir / "default.wmv"))]
    g, loc = global_params(df), local_params(df)
    return [(grays[t].astype(np.float32), g[t - 1], loc[t - 1]) for t in FRAMES]


def _serial_maps(areas, w, alphas, sigmas, ws):
    gains = np.where(alphas > 1e-4, 2.0 * alphas, 0.0)
    out = np.empty((len(areas), ws * ws), np.float32)
    ccnf_cpu._response_range(areas, 11, 11, w, gains, sigmas, np.arange(len(areas)), out, 0, len(areas))
    return out.reshape(len(areas), ws, ws)


@two_cores
@pytest.mark.parametrize("scale, ws", [(1, 9), (2, 7), (0, 11)])
def test_split_responses_equal_serial(clnf, frames, scale, ws, monkeypatch):
    """Large calls are split between two threads (odd and even area counts); small ones and calls
    made while sharing stay on the caller; every way gives the serial maps bit for bit."""
    areas, w, alphas, sigmas = expert_inputs(clnf, frames[0], scale, ws)
    areas[5] = 77.0  # a flat area
    assert len(areas) * ws * ws * w.shape[1] * 121 >= ccnf_cpu.PARALLEL_MIN_WORK
    run_range, splits = threads.run_range, []  # how threads.run_range splits: tests/test_cpu_threads.py
    monkeypatch.setattr(threads, "run_range", lambda *a, split: splits.append(split) or run_range(*a, split=split))
    for n in (len(areas), len(areas) - 1):
        expected = _serial_maps(areas[:n], w[:n], alphas[:n], sigmas[:n], ws)
        np.testing.assert_array_equal(ccnf_cpu.ccnf_response(areas[:n], w[:n], alphas[:n], sigmas[:n]), expected)
        assert splits.pop() is True  # offered to the helper thread
        with threads.sharing():
            assert not threads.can_share()
            np.testing.assert_array_equal(ccnf_cpu.ccnf_response(areas[:n], w[:n], alphas[:n], sigmas[:n]), expected)
    assert threads.can_share()


@two_cores
def test_concurrent_parts_equal_serial_fit(clnf, frames):
    """A tracking step of two faces (the main model's maps split between two threads, the inner-face
    and eye models on two threads) equals the one-thread fit, part landmarks included."""
    images = np.stack([f[0] for f in frames])
    g = np.stack([f[1] for f in frames])
    loc = np.stack([f[2] for f in frames])
    ws = clnf.parameters.window_sizes_small
    both = detect_landmarks_batch(clnf, images, [0, 1], g, loc, ws)
    with threads.sharing():
        serial = detect_landmarks_batch(clnf, images, [0, 1], g, loc, ws)
    assert set(both[0].part_landmarks) == {"inner", "left_eye_28", "right_eye_28"}
    for a, b in zip(both, serial):
        _assert_same_fit(a, b)


def _child_maps(args):
    return ccnf_cpu.ccnf_response(*args)


@two_cores
@forks_with_threads
def test_fork_after_sharing(clnf, frames):
    """A child forked after the parent split a call gets a helper of its own and the same maps."""
    args = expert_inputs(clnf, frames[1], 1, 9)
    expected = ccnf_cpu.ccnf_response(*args)  # the parent's helper thread is running now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_child_maps, (args,)).get(timeout=120)
    np.testing.assert_array_equal(child, expected)
