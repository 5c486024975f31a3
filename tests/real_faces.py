"""Faces of default.wmv with OpenFace's reference fit, prepared as each stage takes them: fixtures shared by the
kernel, landmark and thread tests (made available to every test module by conftest.py; built once a session, a few
MB, read only by their tests), and their helpers."""
from __future__ import annotations

import numpy as np
import pytest

from media import read_frames

# the modules of the fixtures' bodies are imported there: conftest.py imports this one at every collection

CCNF_FRAMES = (0, 120)

FIT_CASES = [("main", 0, 11), ("main", 1, 9), ("main", 2, 7), ("inner", 0, 9), ("left_eye_28", 0, 3),
             ("right_eye_28", 1, 5)]
"""(model, scale index, window size) of the NU-RLMS cases: the main model at its three scales and each part model."""


def _grays(media_dir, frames) -> list:
    """Grey float32 frames of default.wmv at the 0-based indices ``frames``, as the pipeline makes them."""
    from gpuau.video import to_gray8

    return [to_gray8(f).astype(np.float32) for f in read_frames(media_dir / "default.wmv", list(frames))]


@pytest.fixture(scope="session")
def ccnf_frames(media_dir, reference_dir):
    """``[(gray float32 (H, W), params_global (6,), params_local (34,))]`` of CCNF_FRAMES (OpenFace's fit)."""
    from reference import global_params, local_params, read_reference

    df = read_reference(reference_dir / "default.csv", nrows=max(CCNF_FRAMES) + 1)
    g, loc = global_params(df), local_params(df)
    return [(gray, g[i], loc[i]) for gray, i in zip(_grays(media_dir, CCNF_FRAMES), CCNF_FRAMES)]


def expert_inputs(clnf, frame, scale: int, ws: int):
    """Areas (68, ws + 10, ws + 10) and the view's weights, alphas, sigmas around a frame's landmarks
    (as :func:`gpuau.landmarks.clnf.patch_responses` builds them)."""
    from ccnf_steps import extract_areas, similarity_to_reference, view_index

    gray, g, loc = frame
    pdm, ccnf = clnf.model.pdm, clnf.model.scales[scale]
    shape = pdm.calc_shape_2d(g, loc)
    _, ref_to_img = similarity_to_reference(shape, pdm.calc_shape_2d([ccnf.patch_scaling, 0, 0, 0, 0, 0], loc))
    view = view_index(ccnf, g)
    areas = extract_areas(gray, shape, ref_to_img, ws + ccnf.patch_size[1] - 1)
    return areas, ccnf.weights(view), ccnf.alphas(view), ccnf.sigmas(view, ws)


@pytest.fixture(scope="session")
def fit_faces(media_dir, reference_dir):
    """Four faces of four frames: OpenFace's parameters of the frame before, then one of them turned
    (yaw 1.2 rad: the profile view, 33 landmarks invisible), one moved 4 px off (offsets beyond the window) and one
    shrunk to 0.28: ``(images (4, H, W) float32, params_global (4, 6), params_local (4, 34))``."""
    from reference import global_params, local_params, read_reference

    t = np.array([2, 4, 6, 7])
    df = read_reference(reference_dir / "default.csv", nrows=t.max() + 1)
    g, loc = global_params(df).astype(np.float32), local_params(df).astype(np.float32)
    gs, ls = g[t - 1].copy(), loc[t - 1].copy()
    gs[1, 2] = np.float32(1.2)
    gs[2, 4:6] += np.float32([4.0, -4.0])
    gs[3, 0] = np.float32(0.28)
    return np.stack(_grays(media_dir, t)), gs, ls


def part_start(part, clnf, gs, ls):
    """A part's params from the main model's landmarks (as the part loop of DetectLandmarks starts)."""
    g, p = [], []
    for gf, lf in zip(gs, ls):
        locs = np.zeros((part.model.pdm.n_points, 2), np.float32)
        locs[part.part_idx] = clnf.model.pdm.calc_shape_2d(gf, lf)[part.main_idx]
        gp, pp = part.model.pdm.calc_params(locs)
        g.append(gp)
        p.append(pp)
    return np.array(g, np.float32), np.array(p, np.float32)


@pytest.fixture(scope="session")
def aligned_faces(media_dir, reference_dir):
    """Aligned masked faces of 8 default.wmv frames, from the reference landmarks."""
    from gpuau.features.align import align_face_mask
    from gpuau.landmarks.pdm import AU_PDM, PDM
    from gpuau.models.tris_file import load_tris
    from reference import landmarks_2d, read_reference

    landmarks = landmarks_2d(read_reference(reference_dir / "default.csv", nrows=8))
    pdm, tris = PDM.load(AU_PDM), load_tris()
    faces = []
    for frame, lm in zip(read_frames(media_dir / "default.wmv", 8), landmarks):
        g, _ = pdm.calc_params(lm)
        faces.append(align_face_mask(frame, lm, g, pdm.mean_shape, tris))
    return np.stack(faces)
