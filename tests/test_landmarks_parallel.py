"""The landmark fit on two cores gives the one-core bits: CCNF response maps split over Numba's
threads equal the serial maps, and the hierarchical part models fitted concurrently equal the
parts fitted one after the other (default.wmv frames, OpenFace's parameters of the previous frame)."""
import numba
import numpy as np
import pytest

from gpuau.cpu import ccnf_response as ccnf_cpu
from gpuau.landmarks.clnf import CLNF, detect_landmarks_batch
from gpuau.video import open_source
from reference import global_params, local_params, read_reference
from test_kernels_ccnf import expert_inputs
from test_landmarks_fit import _assert_same_fit

FRAMES = (3, 9)


@pytest.fixture(scope="module")
def clnf(models_dir):
    return CLNF.load()


@pytest.fixture(scope="module")
def frames(media_dir, reference_dir):
    """``[(gray float32 (H, W), params_global (6,), params_local (34,))]``: frame t with OpenFace's
    parameters of frame t - 1 (a tracking step)."""
    df = read_reference(reference_dir / "default.csv", nrows=max(FRAMES) + 1)
    grays = [f.gray for _, f in zip(range(max(FRAMES) + 1), open_source(media_dir / "default.wmv"))]
    g, loc = global_params(df), local_params(df)
    return [(grays[t].astype(np.float32), g[t - 1], loc[t - 1]) for t in FRAMES]


@pytest.mark.parametrize("scale, ws", [(1, 9), (2, 7), (0, 11)])
def test_parallel_responses_equal_serial(clnf, frames, scale, ws):
    """Any split of the areas over threads (fewer chunks than areas, uneven, one area per chunk)
    gives the serial maps bit for bit."""
    areas, w, alphas, sigmas = expert_inputs(clnf, frames[0], scale, ws)
    areas[5] = 77.0  # a flat area
    gains = np.where(alphas > 1e-4, 2.0 * alphas, 0.0)
    expected = np.empty((len(areas), ws * ws), np.float32)
    ccnf_cpu._responses(areas, 11, 11, w, gains, sigmas, expected)
    for chunks in (2, 3, len(areas)):
        out = np.full_like(expected, np.nan)
        ccnf_cpu._responses_parallel(areas, 11, 11, w, gains, sigmas, out, chunks)
        np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(ccnf_cpu.ccnf_response(areas, w, alphas, sigmas).reshape(len(areas), -1), expected)


@pytest.fixture
def one_thread():
    """Run the block with Numba's thread count for this thread set to 1 (serial kernels, parts in turn)."""
    threads = numba.get_num_threads()

    def serial():
        numba.set_num_threads(1)

    yield serial
    numba.set_num_threads(threads)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="one core: nothing runs concurrently")
def test_concurrent_parts_equal_serial_fit(clnf, frames, one_thread):
    """A tracking step of two faces (the main model with its response maps split over threads, the
    inner-face and eye models on two threads) equals the one-thread fit, part landmarks included."""
    images = np.stack([f[0] for f in frames])
    g = np.stack([f[1] for f in frames])
    loc = np.stack([f[2] for f in frames])
    ws = clnf.parameters.window_sizes_small
    both = detect_landmarks_batch(clnf, images, [0, 1], g, loc, ws)
    one_thread()
    serial = detect_landmarks_batch(clnf, images, [0, 1], g, loc, ws)
    assert set(both[0].part_landmarks) == {"inner", "left_eye_28", "right_eye_28"}
    for a, b in zip(both, serial):
        _assert_same_fit(a, b)
