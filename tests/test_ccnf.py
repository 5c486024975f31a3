"""CCNF patch experts: file parsing, covariances and response maps against a NumPy oracle on a real frame."""
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from ccnf_steps import extract_areas, similarity_to_reference, view_index
from gpuau.cpu.ccnf_response import ccnf_response
from gpuau.landmarks.ccnf import CCNFScale
from gpuau.landmarks.pdm import PDM
from gpuau.models.store import model_file
from gpuau.video import open_source
from reference import global_params, local_params, read_reference

MODEL = "lib/local/LandmarkDetector/model/"


@pytest.fixture(scope="module")
def scale025(models_dir):
    return CCNFScale.from_file(model_file(MODEL + "patch_experts/ccnf_patches_0.25_general.txt"))


def test_parse_main_scale(scale025):
    a = scale025.arrays
    assert scale025.patch_scaling == 0.25
    assert scale025.centers.shape == (7, 3) and scale025.visibility.shape == (7, 68)
    np.testing.assert_allclose(np.degrees(scale025.centers[:, 1]), [0, -20, -45, -70, 70, 45, 20])
    assert list(a["window_sizes"]) == [7, 9, 11, 15]
    assert a["sigma_components_9"].shape == (3, 81, 81)
    assert a["view0/weights"].shape == (68, 7, 122) and scale025.patch_size == (11, 11)
    # profile views have invisible landmarks, stored as empty experts
    assert scale025.visibility[3].sum() == 35
    assert (a["view3/n_neurons"][scale025.visibility[3] == 0] == 0).all()


def test_parse_eye_scale(models_dir):
    s = CCNFScale.from_file(model_file(MODEL + "model_eye/patch_experts/left_ccnf_patches_1.00_synth_lid_.txt"))
    assert s.visibility.shape == (1, 28) and s.arrays["sigma_components_3"].shape == (0, 9, 9)
    sig = s.sigmas(0, 3)
    # no sigma components: Sigma = I / (2 sum(alpha))
    np.testing.assert_allclose(sig[0], np.eye(9) / (2 * s.alphas(0)[0].sum()), rtol=1e-5)


def test_sigmas_invert(scale025):
    sig = scale025.sigmas(0, 9)
    a = scale025.arrays
    i = 30
    inv = 2 * (scale025.alphas(0)[i].sum() * np.eye(81)
               + np.tensordot(a["view0/betas"][i], a["sigma_components_9"].astype(np.float64), 1))
    np.testing.assert_allclose(sig[i] @ inv, np.eye(81), atol=1e-4)


def test_sigmas_kept_in_the_disk_cache(models_dir, tmp_path, monkeypatch):
    """A start reads the covariances the first one computed (keyed by the file and the window size, every
    view in one array); the same arrays as computing them."""
    monkeypatch.setenv("GPUAU_CACHE", str(tmp_path))
    path = model_file(MODEL + "patch_experts/ccnf_patches_0.5_general.txt")
    first = CCNFScale.from_file(path)
    computed = first.sigmas(1, 7)
    files = set(tmp_path.iterdir())
    assert len(files) == 2  # the parsed file and the window size's covariances
    second = CCNFScale.from_file(path)
    monkeypatch.setattr(CCNFScale, "_compute_sigmas", lambda *_: pytest.fail("computed again"))
    np.testing.assert_array_equal(second.sigmas(1, 7), computed)
    assert set(tmp_path.iterdir()) == files
    uncached = CCNFScale(first.patch_scaling, first.centers, first.visibility, first.arrays)
    monkeypatch.undo()
    np.testing.assert_array_equal(uncached.sigmas(1, 7), computed)


def _oracle(area, w, alphas, sigma, ws):
    win = sliding_window_view(area.astype(np.float64), (11, 11))
    cols = win.transpose(0, 1, 3, 2).reshape(ws, ws, 121)
    cols = cols - cols.mean(-1, keepdims=True)
    nrm = np.sqrt((cols ** 2).sum(-1, keepdims=True))
    nrm[nrm == 0] = 1
    cols = cols / nrm
    x = w[:, 0] + cols @ w[:, 1:].T.astype(np.float64)
    resp = ((2 * alphas / (1 + np.exp(-x))) * (alphas > 1e-4)).sum(-1).reshape(-1)
    out = (sigma.astype(np.float64) @ resp).reshape(ws, ws)
    return out - min(out.min(), 0)


@pytest.mark.parametrize("ws", [7, 11])
def test_response_matches_oracle(scale025, media_dir, reference_dir, ws):
    df = read_reference(reference_dir / "default.csv", nrows=1)
    g, l_ = global_params(df)[0], local_params(df)[0]
    gray = next(iter(open_source(media_dir / "default.wmv"))).gray.astype(np.float32)
    pdm = PDM.load()
    lm = pdm.calc_shape_2d(g, l_)
    _, ref_to_img = similarity_to_reference(lm, pdm.calc_shape_2d([0.25, 0, 0, 0, 0, 0], l_))
    view = view_index(scale025, g)
    areas = extract_areas(gray, lm, ref_to_img, ws + 10)
    sig = scale025.sigmas(view, ws)
    out = ccnf_response(areas, scale025.weights(view), scale025.alphas(view), sig)
    assert out.shape == (68, ws, ws) and (out >= 0).all()
    for k in range(0, 68, 3):
        ref = _oracle(areas[k], scale025.weights(view)[k], scale025.alphas(view)[k], sig[k], ws)
        np.testing.assert_allclose(out[k], ref, atol=2e-5 * ref.max())
    # the map peaks near the centre at the reference landmarks
    peaks = np.array(np.unravel_index(out.reshape(68, -1).argmax(1), (ws, ws))).T
    assert np.abs(peaks - (ws - 1) / 2).mean() < 1.5
