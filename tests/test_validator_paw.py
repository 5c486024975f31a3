"""Piece-wise affine warp: triangle lookup (against the model file's and a brute-force scan's),
warp maps and bilinear sampling."""
import numpy as np
import pandas as pd
import pytest

from gpuau.landmarks.paw import _same_side, paw_from_shape, triangle_map, warp, warp_coefficients, warp_maps
from gpuau.landmarks.validator import DetectionValidator
from gpuau.models.tris_file import load_tris


@pytest.fixture(scope="module")
def validator(models_dir):
    return DetectionValidator.load()


def _triangle_map_oracle(destination, triangulation, min_x, min_y, width, height):
    """OpenFace's raster scan written directly: every pixel against every triangle, then the
    previous pixel's triangle first, else the first triangle whose box and half-planes hold."""
    d = np.asarray(destination, dtype=np.float32)
    vx, vy = d[triangulation, 0], d[triangulation, 1]
    gy, gx = np.meshgrid(np.arange(height, dtype=np.float32) + np.float32(min_y),
                         np.arange(width, dtype=np.float32) + np.float32(min_x), indexing="ij")
    x0, y0 = gx.reshape(-1, 1), gy.reshape(-1, 1)
    inside = (_same_side(x0, y0, vx[:, 0], vy[:, 0], vx[:, 1], vy[:, 1], vx[:, 2], vy[:, 2])
              & _same_side(x0, y0, vx[:, 1], vy[:, 1], vx[:, 0], vy[:, 0], vx[:, 2], vy[:, 2])
              & _same_side(x0, y0, vx[:, 2], vy[:, 2], vx[:, 0], vy[:, 0], vx[:, 1], vy[:, 1]))
    hit = inside & (vx.max(1) >= x0) & (vx.min(1) <= x0) & (vy.max(1) >= y0) & (vy.min(1) <= y0)
    first = np.where(hit.any(1), hit.argmax(1), -1)
    out, guess = np.empty_like(first), -1
    for p in range(first.size):
        guess = guess if guess != -1 and inside[p, guess] else first[p]
        out[p] = guess
    return out.reshape(height, width)


def test_triangle_map_matches_model_file(validator):
    """The triangle lookup built from each view's mean shape equals the one stored in the file."""
    for view in validator.model.views:
        paw = view.paw
        h, w = paw.triangle_id.shape
        tid = triangle_map(paw.destination_landmarks, paw.triangulation, paw.min_x, paw.min_y, w, h)
        np.testing.assert_array_equal(tid, paw.triangle_id)
        built = paw_from_shape(paw.destination_landmarks, paw.triangulation, (paw.min_x, paw.min_y, paw.min_x + w - 1, paw.min_y + h - 1))
        np.testing.assert_array_equal(built.triangle_id, paw.triangle_id)
        np.testing.assert_allclose(built.alpha, paw.alpha, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(built.beta, paw.beta, rtol=1e-4, atol=1e-4)


def test_warp_of_translated_shape_is_a_shift(validator):
    """Source = destination shifted by an integer offset: every face pixel is read at that offset."""
    paw = validator.model.views[0].paw
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (100, 100)).astype(np.float32)
    offset = np.array([40.0 - paw.min_x, 35.0 - paw.min_y], dtype=np.float32)  # whole pixels
    map_x, map_y = warp_maps(paw, warp_coefficients(paw, paw.destination_landmarks + offset))
    inside = paw.pixel_mask == 1
    ys, xs = np.nonzero(inside)
    np.testing.assert_allclose(map_x[inside], xs + 40.0, atol=1e-3)
    np.testing.assert_allclose(map_y[inside], ys + 35.0, atol=1e-3)
    assert np.all(map_x[~inside] == -1) and np.all(map_y[~inside] == -1)
    warped = warp(image, paw, paw.destination_landmarks + offset)
    np.testing.assert_allclose(warped[inside], image[ys + 35, xs + 40], atol=1e-2)


def test_triangle_map_matches_raster_scan(reference_dir, models_dir):
    """Face shapes on a 112 x 112 grid (as the AU stage's masks), also snapped to coarse grids so
    that many pixels fall on shared edges and some triangles collapse to lines."""
    tris = load_tris()
    df = pd.read_csv(reference_dir / "default.csv", skipinitialspace=True)
    for f in (0, 100, 204):
        lm = np.stack([df[[f"x_{i}" for i in range(68)]].to_numpy()[f],
                       df[[f"y_{i}" for i in range(68)]].to_numpy()[f]], axis=1).astype(np.float32)
        shape = (lm - lm.min(0)) / (lm.max(0) - lm.min(0)).max() * 90 + 10
        for dst in (shape, np.round(shape), np.round(shape / 4) * 4):
            for min_x, min_y in ((0.0, 0.0), (-0.5, 0.25)):
                expected = _triangle_map_oracle(dst, tris, min_x, min_y, 112, 112)
                np.testing.assert_array_equal(triangle_map(dst, tris, min_x, min_y, 112, 112), expected)


