"""ccnf_response on every backend, on areas of interest of default.wmv frames sampled around OpenFace's
reference landmarks, with the main model's CCNF patch experts: equal to the Numba twin bit for bit and
close to a float64 NumPy oracle; and on synthetic experts, equal bit for bit to OpenFace's own
``ResponseOpenBlas`` (``tests/data/ccnf_openblas.npz``).

The kernel and the twin share every order (windows' contrast normalisation, OpenBLAS's neuron and
Sigma products, glibc's ``expf``, the sigmoid terms: :mod:`gpuau.cpu.ccnf_response`), so their maps
are identical on every backend.
"""
from pathlib import Path

import numpy as np
import pytest

from backends import devices_only
from gpuau.cpu.ccnf_response import ccnf_response as ccnf_response_cpu
from gpuau.landmarks.tracker import FaceTracker
from gpuau.video import open_source
from real_faces import expert_inputs
from reference import landmarks_2d, read_reference
from synthetic_ccnf import CASES as SYNTHETIC, expert_case
from test_ccnf import _oracle

GOLDEN = Path(__file__).parent / "data" / "ccnf_openblas.npz"
# (scale index, response window size): the tracker's window sizes per scale, the identity-Sigma
# case of a size without sigma components (3) and the largest window (15, 256 threads)
CASES = [(0, 11), (1, 9), (2, 7), (0, 15), (1, 3)]


@devices_only
@pytest.mark.parametrize("scale, ws", CASES)
def test_ccnf_response_matches_twin(backend, clnf, ccnf_frames, scale, ws):
    for frame in ccnf_frames:
        areas, w, alphas, sigmas = expert_inputs(clnf, frame, scale, ws)
        areas[7] = 128.0  # a flat area: every window has zero norm (normalised as 1)
        expected = ccnf_response_cpu(areas, w, alphas, sigmas)
        out = backend.kernels.ccnf_response(*(backend.asarray(a) for a in (areas, w, alphas, sigmas)), 11, 11)
        np.testing.assert_array_equal(backend.asnumpy(out), expected)


def test_ccnf_response_is_openfaces_bit_for_bit(backend):
    """Every map size OpenFace's models use (3 to 15: each path of OpenBLAS's small-matrix kernel), two
    synthetic experts each, flat windows included: OpenFace's ResponseOpenBlas, bit for bit."""
    golden = np.load(GOLDEN)
    for window, seed in SYNTHETIC:
        area, weights, alphas, sigma = expert_case(window, seed)
        out = backend.kernels.ccnf_response(*(backend.asarray(a[None]) for a in (area, weights, alphas, sigma)))
        np.testing.assert_array_equal(backend.asnumpy(out)[0], golden[f"w{window}_s{seed}"], err_msg=f"w={window}")


@pytest.mark.parametrize("scale, ws", [(0, 11), (2, 7)])
def test_ccnf_response_matches_numpy_oracle(backend, clnf, ccnf_frames, scale, ws):
    areas, w, alphas, sigmas = expert_inputs(clnf, ccnf_frames[1], scale, ws)
    out = backend.asnumpy(backend.kernels.ccnf_response(*(backend.asarray(a) for a in (areas, w, alphas, sigmas))))
    assert (out >= 0).all() and (out.min(axis=(1, 2)) == 0).any()
    for k in range(0, 68, 5):
        ref = _oracle(areas[k], w[k], alphas[k], sigmas[k], ws)
        np.testing.assert_allclose(out[k], ref, atol=2e-5 * ref.max())


def test_ccnf_response_experts_cycle_over_areas(backend, clnf, ccnf_frames):
    """Area ``i`` is expert ``i % E``: one expert for several areas (E = 1) gives the maps of that
    expert copied per area (E = N); two faces' 68 areas with one view's 68 experts (E = 68, N = 136)
    give each face's own maps; N not a multiple of E is refused."""
    areas = np.concatenate([expert_inputs(clnf, f, 1, 9)[0] for f in ccnf_frames])  # 2 faces x 68
    _, w, alphas, sigmas = expert_inputs(clnf, ccnf_frames[0], 1, 9)
    few = areas[::17]  # landmarks 0, 17, 34, 51 of each face
    n = len(few)
    one = [backend.asarray(a[30:31]) for a in (w, alphas, sigmas)]
    copied = [backend.asarray(np.repeat(a[30:31], n, axis=0)) for a in (w, alphas, sigmas)]
    out = backend.asnumpy(backend.kernels.ccnf_response(backend.asarray(few), *one))
    np.testing.assert_array_equal(out, backend.asnumpy(backend.kernels.ccnf_response(backend.asarray(few), *copied)))
    assert out.shape == (n, 9, 9)
    experts = [backend.asarray(a) for a in (w, alphas, sigmas)]
    both = backend.asnumpy(backend.kernels.ccnf_response(backend.asarray(areas), *experts))
    for f in range(2):
        alone = backend.kernels.ccnf_response(backend.asarray(areas[68 * f:68 * (f + 1)]), *experts)
        np.testing.assert_array_equal(both[68 * f:68 * (f + 1)], backend.asnumpy(alone))
    with pytest.raises(ValueError, match="multiple of E"):
        backend.kernels.ccnf_response(backend.asarray(areas[:100]), *experts)


def test_ccnf_response_expert_index(backend, clnf, ccnf_frames):
    """``experts`` picks each area's expert from one table (two views' experts, as ``patch_responses`` stacks
    them): every map equals that expert's map computed alone, -1 gives a map of zeros (an invisible
    landmark), and indices outside the table given from the host are refused."""
    areas = np.concatenate([expert_inputs(clnf, f, 1, 9)[0] for f in ccnf_frames])  # 2 faces x 68
    ccnf = clnf.model.scales[1]
    views = (0, 1)
    table = [np.concatenate([a(v) for v in views]) for a in (ccnf.weights, ccnf.alphas, lambda v: ccnf.sigmas(v, 9))]
    index = np.arange(136)[::-1].copy()  # each area another landmark's expert, of the other view
    out = ref = backend.asnumpy(backend.kernels.ccnf_response(*(backend.asarray(a) for a in [areas, *table]),
                                                              experts=index))
    for i in range(0, 136, 9):
        alone = [backend.asarray(a[index[i]:index[i] + 1]) for a in table]
        np.testing.assert_array_equal(out[i], backend.asnumpy(backend.kernels.ccnf_response(backend.asarray(areas[i:i + 1]),
                                                                                        *alone))[0])
    hidden = index.copy()
    hidden[::3] = -1
    shown = hidden == index
    out = backend.asnumpy(backend.kernels.ccnf_response(*(backend.asarray(a) for a in [areas, *table]), experts=hidden))
    assert not out[~shown].any() and (out[shown] == ref[shown]).all()
    for bad in (index[:-1], np.full(136, 136), np.full(136, -2)):
        with pytest.raises(ValueError, match="expert indices"):
            backend.kernels.ccnf_response(*(backend.asarray(a) for a in [areas, *table]), experts=bad)


def test_ccnf_response_rejects_bad_shapes(clnf, ccnf_frames):
    from gpuau.device import resolve_device

    emulated = resolve_device("emulated")
    areas, w, alphas, sigmas = expert_inputs(clnf, ccnf_frames[0], 2, 7)
    with pytest.raises(ValueError, match="sigmas must have shape"):
        emulated.kernels.ccnf_response(areas, w, alphas, sigmas[:, :-1])
    with pytest.raises(ValueError, match="weights must have shape"):
        emulated.kernels.ccnf_response(areas, w, alphas, sigmas, 9, 9)
    assert emulated.kernels.ccnf_response(areas[:0], w[:0], alphas[:0], sigmas[:0]).shape == (0, 7, 7)


def test_tracker_on_backend_matches_openface(backend, media_dir, reference_dir, models_dir):
    """FaceTracker fitting with this backend's kernels (warp_affine, ccnf_response, mean_shift,
    landmark_likelihoods) on the first 20 frames of default.wmv: OpenFace's landmarks as closely as
    the CPU path (the reference is rounded to 0.1 px, so ~0.04 px is its floor)."""
    ref = landmarks_2d(read_reference(reference_dir / "default.csv", nrows=20))
    tracker = FaceTracker(device=backend)
    results = []
    for f in open_source(media_dir / "default.wmv"):
        results.append(tracker.track(f.image, f.gray))
        if len(results) == len(ref):
            break
    assert all(r.success for r in results)
    errors = np.linalg.norm(np.stack([r.landmarks for r in results]) - ref, axis=-1)
    assert errors.mean() < 0.06 and errors.max() < 0.4


def test_the_kernel_refuses_maps_and_experts_its_shared_memory_cannot_hold():
    """A 1 x 256 map (51 KB of static shared memory) failed to compile at its first launch, and more neurons than
    threads left gains unset; the wrapper now says what it supports."""
    from gpuau.device import resolve_device
    from gpuau.kernels.ccnf_response import ccnf_response

    backend = resolve_device("emulated")
    with pytest.raises(ValueError, match=r"a 1x256 response map .* \(square maps of 1 to 16 px supported"):
        ccnf_response(backend, np.zeros((1, 11, 266), np.float32), np.zeros((1, 7, 122), np.float32),
                      np.zeros((1, 7)), np.zeros((1, 256, 256), np.float32))
    with pytest.raises(ValueError, match=r"a 16x16 map of 11x11 patches with 40 neurons needs 58384 bytes of shared "):
        ccnf_response(backend, np.zeros((1, 26, 26), np.float32), np.zeros((1, 40, 122), np.float32),
                      np.zeros((1, 40)), np.zeros((1, 256, 256), np.float32))
