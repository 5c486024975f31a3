"""CLNF fitting: one tracking step from OpenFace's own parameters of the previous frame reproduces
OpenFace's landmarks of the next frame (default.wmv)."""
import numpy as np
import pytest

from gpuau.landmarks.clnf import CLNF, detect_landmarks, fit
from gpuau.video import open_source
from reference import global_params, landmarks_2d, local_params, read_reference

N_FRAMES = 12


@pytest.fixture(scope="module")
def clnf(models_dir):
    return CLNF.load()


@pytest.fixture(scope="module")
def default_video(media_dir, reference_dir):
    df = read_reference(reference_dir / "default.csv", nrows=N_FRAMES)
    frames = [f.gray for _, f in zip(range(N_FRAMES), open_source(media_dir / "default.wmv"))]
    return frames, global_params(df), local_params(df), landmarks_2d(df)


def test_model_layout(clnf):
    assert clnf.model.pdm.n_points == 68 and len(clnf.model.scales) == 3
    assert [s.patch_scaling for s in clnf.model.scales] == [0.25, 0.35, 0.5]
    assert [p.name for p in clnf.parts] == ["inner", "left_eye_28", "right_eye_28"]
    inner, left, _ = clnf.parts
    assert inner.model.pdm.n_points == 51 and list(inner.main_idx[:2]) == [17, 18]
    assert left.model.pdm.n_points == 28 and list(left.part_idx) == [8, 10, 12, 14, 16, 18]
    assert len(left.model.scales) == 2 and inner.parameters.weight_factor == 2.5


def test_tracking_step_matches_reference(clnf, default_video):
    frames, g, l_, lm = default_video
    errors = []
    for t in range(1, N_FRAMES):
        res = detect_landmarks(clnf, frames[t], g[t - 1], l_[t - 1], clnf.parameters.window_sizes_small)
        assert res.success
        errors.append(np.linalg.norm(res.landmarks - lm[t], axis=1).mean())
    # the reference is rounded to 0.1 px: 0.04 px mean is the rounding error itself
    assert np.mean(errors) < 0.1 and max(errors) < 0.5


def test_main_model_alone_is_close(clnf, default_video):
    frames, g, l_, lm = default_video
    res = fit(clnf.model, frames[5].astype(np.float32), g[4], l_[4], clnf.parameters.window_sizes_small, clnf.parameters)
    err = np.linalg.norm(res.landmarks - lm[5], axis=1)
    # without the part models' refinement the fit is within about a pixel
    assert err.mean() < 1.5
    assert res.landmark_likelihoods.shape == (68,) and np.isfinite(res.likelihood)
