"""KDE mean-shift and landmark likelihoods (the CPU functions that NU-RLMS and its kernel's device
functions compute; tests/test_kernels_pdm_fit.py compares the kernel with them) over real response maps
(the main model's CCNF experts on default.wmv around OpenFace's reference landmarks): close to a float64
NumPy evaluation of the same formulas, clamps and KDE grid ties included."""
import numpy as np
import pytest

from gpuau.cpu.ccnf_response import ccnf_response
from gpuau.cpu.mean_shift import KDE_STEP, kde_table, landmark_likelihoods, mean_shift
from real_faces import expert_inputs

SIGMA = 1.5  # FitParameters.sigma of the main model


@pytest.fixture(scope="module", params=[(0, 11), (1, 9), (2, 7), (1, 3)], ids=lambda p: f"ws{p[1]}")
def maps(request, clnf, ccnf_frames):
    """Response maps (68, R, R), offsets (68,) x 2 and visibility (68,) of one frame and window size.

    Offsets cover the inside of the window, both clamps (below 0, above R - 0.1) and ties of the
    0.1 px KDE grid; every 9th landmark is invisible."""
    scale, ws = request.param
    resp = ccnf_response(*expert_inputs(clnf, ccnf_frames[1], scale, ws))
    rng = np.random.default_rng(ws)
    dxs = rng.uniform(-0.7, ws + 0.2, 68).astype(np.float32)
    dys = rng.uniform(-0.7, ws + 0.2, 68).astype(np.float32)
    dxs[:8] = np.float32([0.05, 0.15, 1.25, 2.35, (ws - 1) / 2, ws - 0.1, ws - 0.05, -0.0])
    visible = (np.arange(68) % 9 != 4).astype(np.int32)
    return resp, dxs, dys, visible


def test_mean_shift_matches_numpy(maps):
    """The twin (and so every backend) against the formulas in float64: Gaussian KDE at the offsets
    rounded to the 0.1 px grid, after clamping into the window."""
    resp, dxs, dys, visible = maps
    r = resp.shape[1]
    out = np.zeros((68, 2), np.float32)
    mean_shift(resp, dxs, dys, visible, kde_table(r, float(np.float32(-0.5 / SIGMA**2))), out)
    dx = np.clip(dxs, 0, np.float32(r) - KDE_STEP)
    dy = np.clip(dys, 0, np.float32(r) - KDE_STEP)
    gx = np.floor((dx / KDE_STEP).astype(np.float64) + 0.5) * 0.1  # grid step nearest in float32
    gy = np.floor((dy / KDE_STEP).astype(np.float64) + 0.5) * 0.1
    dx, dy = dx.astype(np.float64), dy.astype(np.float64)
    jj = np.arange(r)
    k = np.exp(-0.5 / SIGMA**2 * ((gy[:, None, None] - jj[None, :, None]) ** 2 + (gx[:, None, None] - jj[None, None, :]) ** 2))
    w = resp.astype(np.float64) * k
    s = w.sum(axis=(1, 2))
    ms = np.stack([(w * jj[None, None, :]).sum(axis=(1, 2)) / s - dx, (w * jj[None, :, None]).sum(axis=(1, 2)) / s - dy], 1)
    ms[visible == 0] = 0
    np.testing.assert_allclose(out, ms, atol=2e-5)

    lik = landmark_likelihoods(resp, dxs, dys, visible, SIGMA)
    d2 = (dys.astype(np.float64)[:, None, None] - jj[None, :, None]) ** 2 + (dxs.astype(np.float64)[:, None, None] - jj[None, None, :]) ** 2
    ref = (resp * np.exp(-0.5 * d2 / SIGMA**2)).sum(axis=(1, 2))
    np.testing.assert_allclose(lik[visible == 1], ref[visible == 1], rtol=2e-6)


def test_a_nan_offset_reads_the_first_kde_kernel(maps):
    """A NaN offset (NaN parameters, or a zero sum of weights an iteration before) passed both clamps, and its KDE
    row (int)NaN read outside the table: INT_MIN on a CPU (the twin read past the table, the emulated kernel
    crashed), row 0 on a GPU. It reads row 0 now, as an offset of 0 does."""
    resp, dxs, dys, visible = maps
    kde = kde_table(resp.shape[1], float(np.float32(-0.5 / SIGMA**2)))
    nan, zero = np.zeros((68, 2), np.float32), np.zeros((68, 2), np.float32)
    mean_shift(resp, np.full(68, np.nan, np.float32), np.full(68, np.nan, np.float32), visible, kde, nan)
    mean_shift(resp, np.zeros(68, np.float32), np.zeros(68, np.float32), visible, kde, zero)
    np.testing.assert_array_equal(nan, zero)


def test_nu_rlms_with_a_nan_translation_runs_on_every_backend(backend):
    """The kernel's mean shift inside NU-RLMS, as above (the emulated kernel ended the process: segmentation fault)."""
    from gpuau.device import resolve_device

    b, rng, n, m = resolve_device(backend), np.random.default_rng(0), 28, 10
    mean = (rng.normal(size=3 * n) * 10).astype(np.float32)
    components = (rng.normal(size=(3 * n, m)) * 0.1).astype(np.float32)
    eye = np.eye(2, dtype=np.float32)[None]
    a = b.asarray
    out = b.kernels.nu_rlms(a(mean), a(components), a(np.ones(m, np.float32)), a(rng.random((1, n, 5, 5), np.float32)),
                            a(np.array([[1, 0, 0, 0, np.nan, 50]], np.float32)), a(np.zeros((1, m), np.float32)),
                            a(np.zeros((1, n, 2), np.float32)), a(eye), a(eye), a(np.ones((1, n), np.int32)),
                            a(np.ones((1, 2 * n), np.float32)), np.float32(1), 2, a(kde_table(5, -0.5)), np.float32(2),
                            1.0, a(np.ones(1, np.int32)))
    assert len(out) > 0


def test_nu_rlms_stops_once_the_shape_moves_less_than_a_hundredth_of_a_pixel():
    """CLNF::NU_RLMS ends a pass when the projected shape moved less than 0.01 px (norm over all landmarks) since the
    previous iteration; never at its first iteration."""
    from gpuau.cpu.nu_rlms import nu_rlms_offsets
    from gpuau.cpu.pdm_fit import project, shape_3d

    rng = np.random.default_rng(0)
    n, m = 5, 2
    mean, pc = rng.normal(0, 20, 3 * n).astype(np.float32), rng.normal(0, 1, (3 * n, m)).astype(np.float32)
    g, p = np.array([1, 0.1, -0.2, 0.05, 320, 240], np.float32), np.array([0.5, -0.5], np.float32)
    cur = project(shape_3d(mean, pc, p), g)
    base, img_to_ref = cur.copy(), np.eye(2, dtype=np.float32)
    for moved, stops in ((0.005, True), (0.02, False)):
        for it in (0, 1):
            prev = cur + np.float32(moved / np.sqrt(2 * n))  # every coordinate moved alike: the norm is `moved`
            stop, _ = nu_rlms_offsets(mean, pc, g, p, base, img_to_ref, np.float32(4), it, prev,
                                      np.zeros(n, np.float32), np.zeros(n, np.float32))
            assert stop == (stops and it > 0), (moved, it)
