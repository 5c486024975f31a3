"""Piece-wise affine warp: triangle lookup (against the model file's and a brute-force scan's),
warp maps and bilinear sampling (against OpenCV 4.10's remap)."""
from pathlib import Path

import numpy as np
import pandas as pd

from gpuau.cpu.paw import remap
from gpuau.landmarks.paw import paw_from_shape, triangle_map, warp, warp_coefficients, warp_maps
from gpuau.models.tris_file import load_tris


def _same_side(x0, y0, x1, y1, x2, y2, x3, y3):
    """``PAW::sameSide`` in float32 NumPy."""
    a = (x3 - x2) * (y0 - y2) - (x0 - x2) * (y3 - y2)
    b = (x3 - x2) * (y1 - y2) - (x1 - x2) * (y3 - y2)
    return a * b >= 0


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


def _collinear(dst, tris):
    v = np.asarray(dst, np.float32)[tris]
    cross = (v[:, 1, 0] - v[:, 0, 0]) * (v[:, 2, 1] - v[:, 0, 1]) - (v[:, 2, 0] - v[:, 0, 0]) * (v[:, 1, 1] - v[:, 0, 1])
    return np.flatnonzero(cross == 0)


def test_triangle_map_matches_raster_scan_on_many_faces(reference_dir, models_dir):
    """Faces of every reference video, scaled and shifted at random onto the AU stage's 112 x 112
    grid, as they are and snapped to 1, 1/2 and 4 px grids (shared edges through pixel centres,
    triangles collapsed to lines)."""
    tris = load_tris()
    rng = np.random.default_rng(5)
    n_sticky = 0
    for csv in sorted(reference_dir.glob("*.csv")):
        df = pd.read_csv(csv, skipinitialspace=True)
        xs = df[[f"x_{i}" for i in range(68)]].to_numpy(np.float32)
        ys = df[[f"y_{i}" for i in range(68)]].to_numpy(np.float32)
        for f in np.linspace(0, len(df) - 1, 8).astype(int):
            lm = np.stack([xs[f], ys[f]], axis=1)
            span = (lm.max(0) - lm.min(0)).max()
            if not span > 0:
                continue
            shape = ((lm - lm.min(0)) / span * rng.uniform(60, 120) + rng.uniform(-10, 20)).astype(np.float32)
            for dst in (shape, np.round(shape), np.round(shape * 2) / 2, np.round(shape / 4) * 4):
                min_x, min_y = rng.choice([0.0, -0.5, 0.25, 0.5], 2)
                expected = _triangle_map_oracle(dst, tris, min_x, min_y, 112, 112)
                np.testing.assert_array_equal(triangle_map(dst, tris, min_x, min_y, 112, 112), expected)
                n_sticky += any((expected == t).sum() > 1000 for t in _collinear(dst, tris))
    assert n_sticky >= 1  # the scan met a collapsed triangle and kept it (see the next test)


def test_collapsed_triangle_keeps_every_later_pixel():
    """A triangle whose vertices are collinear passes OpenFace's half-plane tests everywhere (its
    signed area is 0), so once the scan enters its bounding box it stays the previous-pixel guess
    for the rest of the grid, inside other triangles or outside all of them."""
    dst = np.array([[2, 2], [8, 2], [2, 8], [12, 5], [14, 5], [16, 5]], np.float32)
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    tid = triangle_map(dst, tris, 0.0, 0.0, 20, 20)
    np.testing.assert_array_equal(tid, _triangle_map_oracle(dst, tris, 0.0, 0.0, 20, 20))
    first = 5 * 20 + 12  # pixel (y=5, x=12): first one in the collapsed triangle's box
    assert np.all(tid.reshape(-1)[first:] == 1)
    assert tid[2, 2] == 0 and tid[0, 0] == -1 and tid[5, 11] == -1


def test_warp_maps_batch_and_outside(validator):
    """Batched maps equal one-by-one maps, and -1 marks the pixels outside the face."""
    paw = validator.model.views[4].paw
    rng = np.random.default_rng(6)
    jitter = rng.uniform(-2, 2, (3, 1) + paw.destination_landmarks.shape).astype(np.float32)
    sources = paw.destination_landmarks + np.float32(60 - min(paw.min_x, paw.min_y)) + jitter
    map_x, map_y = warp_maps(paw, warp_coefficients(paw, sources))
    assert map_x.shape == map_y.shape == (3, 1) + paw.pixel_mask.shape
    for i in range(3):
        mx, my = warp_maps(paw, warp_coefficients(paw, sources[i, 0]))
        np.testing.assert_array_equal(map_x[i, 0], mx)
        np.testing.assert_array_equal(map_y[i, 0], my)
        assert np.all(mx[paw.pixel_mask == 0] == -1) and np.all(mx[paw.pixel_mask == 1] > 0)


def test_remap_matches_opencv410():
    """PAW::Warp's cv::remap as OpenCV 4.10 computes it (tests/data/make_paw_remap_opencv410.py):
    affine maps onto a real face, -1 outside the face, positions past the borders and on rounding
    ties, bit for bit."""
    golden = np.load(Path(__file__).parent / "data" / "paw_remap_opencv410.npz")
    image = golden["face"].astype(np.float32)
    for map_x, map_y, expected in zip(golden["map_x"], golden["map_y"], golden["warped"]):
        np.testing.assert_array_equal(remap(image, map_x, map_y), expected)


def test_triangle_map_with_a_nan_landmark(reference_dir, models_dir):
    """A NaN landmark takes its triangles out (no half-plane test holds); the others are unchanged."""
    tris = load_tris()
    df = pd.read_csv(reference_dir / "default.csv", skipinitialspace=True)
    lm = np.stack([df[[f"x_{i}" for i in range(68)]].to_numpy(np.float32)[0],
                   df[[f"y_{i}" for i in range(68)]].to_numpy(np.float32)[0]], axis=1)
    dst = (lm - lm.min(0)) / (lm.max(0) - lm.min(0)).max() * 90 + 10
    for i in (0, 30, 67):
        bad = dst.copy()
        bad[i, i % 2] = np.nan
        tid = triangle_map(bad, tris, 0.0, 0.0, 112, 112)
        np.testing.assert_array_equal(tid, _triangle_map_oracle(bad, tris, 0.0, 0.0, 112, 112))
        assert not np.isin(np.flatnonzero((tris == i).any(1)), tid).any()
