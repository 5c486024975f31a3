"""Similarity-normalised masked face of the AU stage on a real default.wmv frame."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backends import assert_backend_close
from gpuau.cpu.warp_affine import warp_affine
from gpuau.features.align import (
    AU_SCALE,
    FOREHEAD_INDICES,
    RIGID_INDICES,
    align_face_mask,
    align_faces_mask,
    face_mask,
    invert_affine,
    mask_points,
    similarity_warp,
)
from gpuau.features.geometry import geometry_descriptor
from gpuau.landmarks.paw import paw_from_shape
from gpuau.landmarks.pdm import AU_PDM, PDM
from gpuau.models.tris_file import load_tris
from media import read_frames
from reference import landmarks_2d, read_reference


@pytest.fixture(scope="module")
def frame0(media_dir, reference_dir):
    lm = landmarks_2d(read_reference(reference_dir / "default.csv", nrows=1))[0]
    (frame,) = read_frames(media_dir / "default.wmv", 1)
    pdm = PDM.load(AU_PDM)
    g, p = pdm.calc_params(lm)
    return frame, lm, g, p, pdm, load_tris()


def test_warp_maps_rigid_points_onto_the_mean_shape(frame0):
    frame, lm, g, _, pdm, _ = frame0
    warp = similarity_warp(lm, g, pdm.mean_shape)
    assert warp.dtype == np.float32 and warp.shape == (2, 3)
    a = warp[:, :2]
    assert abs(a[0, 0] - a[1, 1]) < 1e-6 and abs(a[0, 1] + a[1, 0]) < 1e-6  # similarity
    mapped = lm @ a.T + warp[:, 2]
    ref = (pdm.mean_shape * AU_SCALE)[:136].reshape(2, 68).T
    # the face centre (PDM translation) lands at the image centre; rigid points on the mean shape
    err = mapped[RIGID_INDICES] - (ref[RIGID_INDICES] + 56)
    assert np.abs(err.mean(0)).max() < 3 and np.sqrt((err ** 2).sum(1)).mean() < 3


def test_warps_of_a_stack_are_each_faces(reference_dir):
    """Stacked faces (all of default.wmv's reference landmarks) get the warps, inverse warps and mask shapes
    each gets alone, bit for bit."""
    lm = landmarks_2d(read_reference(reference_dir / "default.csv")).astype(np.float32)
    pdm = PDM.load(AU_PDM)
    g, _ = pdm.calc_params_batch(lm)
    stacked = similarity_warp(lm, g, pdm.mean_shape)
    inverse, points = invert_affine(stacked), mask_points(lm, stacked)
    assert stacked.shape == inverse.shape == (len(lm), 2, 3) and points.shape == lm.shape
    for i in range(0, len(lm), 7):
        alone = similarity_warp(lm[i], g[i], pdm.mean_shape)
        np.testing.assert_array_equal(stacked[i], alone)
        np.testing.assert_array_equal(inverse[i], invert_affine(alone))
        np.testing.assert_array_equal(points[i], mask_points(lm[i], alone))
    assert not invert_affine(np.zeros((2, 3), np.float32)).any()  # a singular warp maps nothing, as OpenCV's


def test_invert_affine_matches_opencv(frame0):
    frame, lm, g, _, pdm, _ = frame0
    warp = similarity_warp(lm, g, pdm.mean_shape)
    np.testing.assert_allclose(invert_affine(warp), cv2.invertAffineTransform(warp.astype(np.float64)), rtol=1e-12, atol=1e-9)


def test_aligned_face_and_mask(frame0):
    frame, lm, g, _, pdm, tris = frame0
    face = align_face_mask(frame, lm, g, pdm.mean_shape, tris)
    assert face.shape == (112, 112, 3) and face.dtype == np.uint8
    warp = similarity_warp(lm, g, pdm.mean_shape)
    mask = face_mask(lm, warp, tris)
    assert 0.5 < mask.mean() < 0.8  # the face oval fills most of the crop
    assert not face[mask == 0].any() and face[mask == 1].mean() > 60  # background black, skin bright
    # inside the mask the plain warp's pixels: the fused kernel skips only the pixels it masks
    plain = warp_affine(frame[None], [0], invert_affine(warp)[None], 112, 112)[0]
    np.testing.assert_array_equal(face, np.where(mask[..., None] == 1, plain, 0))
    # the forehead is included: the mask reaches above the brows
    dest = lm @ warp[:, :2].T + warp[:, 2]
    brow_top = int(dest[17:27, 1].min())
    assert mask[max(brow_top - 20, 0), 56] == 1
    # same pixels as PAW's mask over the lifted shape
    lifted = dest.astype(np.float32)
    lifted[FOREHEAD_INDICES, 1] -= np.float32(30.0)
    assert (paw_from_shape(lifted, tris, bounds=(0, 0, 111, 111)).pixel_mask != mask).sum() <= 4


def test_geometry_descriptor(frame0):
    _, _, _, p, pdm, _ = frame0
    geo = geometry_descriptor(pdm.princ_comp, p)
    assert geo.shape == (238,) and geo.dtype == np.float64
    np.testing.assert_allclose(geo[204:], p.astype(np.float64))
    np.testing.assert_allclose(geo[:204], pdm.princ_comp.astype(np.float64) @ p.astype(np.float64), rtol=1e-12, atol=1e-12)
    assert geometry_descriptor(pdm.princ_comp, np.zeros((3, 34))).shape == (3, 238)


@pytest.fixture(scope="module")
def faces(media_dir, reference_dir):
    """Frames 0, 40, ..., 280 of default.wmv with OpenFace's landmarks and the AU PDM's global parameters."""
    rows = list(range(0, 288, 40))
    df = read_reference(reference_dir / "default.csv")
    lm = landmarks_2d(df[df["frame"].isin([r + 1 for r in rows])])
    frames = np.stack(read_frames(media_dir / "default.wmv", rows))
    pdm = PDM.load(AU_PDM)
    g = np.array([pdm.calc_params(l)[0] for l in lm], np.float32)
    return frames, lm, g, pdm, load_tris()


def test_align_faces_mask_on_every_backend(backend, faces):
    """The batched warp-and-mask kernel == OpenCV 4.10's warp times the PAW mask, bit for bit, on real faces
    (two faces per frame, one of them cut from another frame)."""
    frames, lm, g, pdm, tris = faces
    n = len(lm)
    index = np.concatenate([np.arange(n), (np.arange(n) + 1) % n])
    lm2, g2 = np.concatenate([lm, lm]), np.concatenate([g, g])
    out = align_faces_mask(frames, index, lm2, g2, pdm.mean_shape, tris, device=backend)
    warps = [similarity_warp(lm2[i], g2[i], pdm.mean_shape) for i in range(2 * n)]
    expected = warp_affine(frames, index, np.array([invert_affine(w) for w in warps]), 112, 112)
    masks = np.array([face_mask(lm2[i], warps[i], tris) for i in range(2 * n)])
    expected *= masks[..., None]
    assert_backend_close(backend, out, expected, exact=True)
    assert 0.5 < masks.mean() < 0.8 and expected[masks == 1].mean() > 60


@pytest.mark.parametrize("scale, size", [(0.7, 112), (0.35, 112), (1.4, 224)])
def test_the_mask_shape_lifts_the_forehead_by_30_px_at_the_au_scale_and_in_proportion(frame0, scale, size):
    """AlignFaceMask lifts the forehead points by 30 / 0.7 * sim_scale (30 px at the AU scale), the other points as
    the warp places them: `--aligned-scale` faces are masked at their own forehead."""
    _, lm, g, _, pdm, _ = frame0
    warp = similarity_warp(lm, g, pdm.mean_shape, scale, size, size)
    dest = lm.astype(np.float64) @ warp[:, :2].T.astype(np.float64) + warp[:, 2]
    points = mask_points(lm, warp, scale)
    np.testing.assert_allclose(dest[FOREHEAD_INDICES, 1] - points[FOREHEAD_INDICES, 1], 30 / 0.7 * scale, atol=1e-3)
    rest = np.setdiff1d(np.arange(68), FOREHEAD_INDICES)
    np.testing.assert_allclose(points[rest], dest[rest], atol=1e-3)
    np.testing.assert_allclose(points[FOREHEAD_INDICES, 0], dest[FOREHEAD_INDICES, 0], atol=1e-3)
