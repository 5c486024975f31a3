"""FHOG: the Numba kernel against a vectorised NumPy reference of dlib's float32 SIMD algorithm,
on real aligned faces and on synthetic images (ties between colour channels, flat images)."""
from __future__ import annotations

import numpy as np
import pytest

from backends import devices_only, two_cores
from gpuau.cpu import fhog as cpu_fhog
from gpuau.cpu import threads
from gpuau.cpu.fhog import fhog
from gpuau.kernels.fhog import fhog_layout

F = np.float32
DIRECTIONS = np.array([[1.0, 0.0], [0.9397, 0.3420], [0.7660, 0.6428], [0.500, 0.8660], [0.1736, 0.9848],
                       [-0.1736, 0.9848], [-0.5000, 0.8660], [-0.7660, 0.6428], [-0.9397, 0.3420]], F)


def fhog_reference(img: np.ndarray, cell: int = 8) -> np.ndarray:
    """dlib 19's impl_extract_fhog_features (cell_size > 1) in vectorised NumPy float32."""
    if img.ndim == 2:
        img = img[..., None]
    nr, nc, nch = img.shape
    cells_nr, cells_nc = int(F(nr) / F(cell) + 0.5), int(F(nc) / F(cell) + 0.5)
    vis_nr, vis_nc = min(cells_nr * cell, nr) - 1, min(cells_nc * cell, nc) - 1
    simd_end = 1
    while simd_end < vis_nc - 7:
        simd_end += 8
    I = img.astype(np.int32)
    y, x = np.mgrid[1:vis_nr, 1:vis_nc]
    dx = I[y, x + 1] - I[y, x - 1]  # (h, w, C)
    dy = I[y + 1, x] - I[y - 1, x]
    ln = dx * dx + dy * dy
    simd = x < simd_end
    if nch == 3:
        r, g, b = 2, 1, 0
        # SIMD lanes: red vs green keeps green on ties, then blue on ties; scalar: red, green, blue
        pick = np.where(ln[..., r] > ln[..., g], r, g)
        pick = np.where(np.take_along_axis(ln, pick[..., None], 2)[..., 0] > ln[..., b], pick, b)
        pick_s = np.full_like(pick, r)
        pick_s = np.where(ln[..., g] > np.take_along_axis(ln, pick_s[..., None], 2)[..., 0], g, pick_s)
        pick_s = np.where(ln[..., b] > np.take_along_axis(ln, pick_s[..., None], 2)[..., 0], b, pick_s)
        pick = np.where(simd, pick, pick_s)[..., None]
        gx, gy, v2 = (np.take_along_axis(a, pick, 2)[..., 0] for a in (dx, dy, ln))
    else:
        gx, gy, v2 = dx[..., 0], dy[..., 0], ln[..., 0]
    gx, gy = gx.astype(F), gy.astype(F)
    v = np.sqrt(v2.astype(F))
    best_dot = np.zeros_like(v)
    best_o = np.zeros(v.shape, np.int64)
    for o in range(9):
        dot = (gx * DIRECTIONS[o, 0]) + (gy * DIRECTIONS[o, 1])
        up = dot > best_dot
        best_dot, best_o = np.where(up, dot, best_dot), np.where(up, o, best_o)
        up = -dot > best_dot
        best_dot, best_o = np.where(up, -dot, best_dot), np.where(up, o + 9, best_o)
    yp = (((y.astype(F)).astype(np.float64) + 0.5) / float(F(cell)) - 0.5).astype(F)
    iyp = np.floor(yp).astype(np.int64)
    vy0 = yp - iyp.astype(F)
    vy1 = (1.0 - vy0.astype(np.float64)).astype(F)
    # SIMD columns
    xp_v = ((x.astype(F) + F(0.5)) / F(cell) + F(0.5)).astype(F)
    ix_v = xp_v.astype(np.int64)
    vx0_v = xp_v - ix_v.astype(F)
    vx1_v = (F(1) - vx0_v) * v
    vx0_v = vx0_v * v
    w_v = [vy1 * vx1_v, vy0 * vx1_v, vy1 * vx0_v, vy0 * vx0_v]
    # scalar tail
    xp_s = ((x.astype(np.float64) + 0.5) / cell - 0.5).astype(F)
    ix_s = np.floor(xp_s).astype(np.int64)
    vx0_s = xp_s - ix_s.astype(F)
    vx1_s = (1.0 - vx0_s.astype(np.float64)).astype(F)
    w_s = [(vy1 * vx1_s) * v, (vy0 * vx1_s) * v, (vy1 * vx0_s) * v, (vy0 * vx0_s) * v]
    c0 = np.where(simd, ix_v, ix_s + 1)
    weights = [np.where(simd, a, b) for a, b in zip(w_v, w_s)]
    r0 = iyp + 1
    rows = np.stack([r0, r0 + 1, r0, r0 + 1], -1).ravel()
    cols = np.stack([c0, c0, c0 + 1, c0 + 1], -1).ravel()
    ori = np.repeat(best_o.ravel(), 4)
    hist = np.zeros((cells_nr + 2, cells_nc + 2, 18), F)
    np.add.at(hist, (rows, cols, ori), np.stack(weights, -1).ravel())  # raster order, as dlib adds
    h = hist[1:-1, 1:-1]
    e = h[..., :9] + h[..., 9:]
    norm = np.zeros((cells_nr, cells_nc), F)
    for o in range(9):
        norm = norm + e[..., o] * e[..., o]
    hog_nr, hog_nc = cells_nr - 2, cells_nc - 2
    N = lambda dy_, dx_: norm[dy_ : dy_ + hog_nr, dx_ : dx_ + hog_nc]
    s = np.stack([((N(1, 1) + N(1, 2)) + N(2, 1)) + N(2, 2), ((N(0, 1) + N(0, 2)) + N(1, 1)) + N(1, 2),
                  ((N(1, 0) + N(1, 1)) + N(2, 0)) + N(2, 1), ((N(0, 0) + N(0, 1)) + N(1, 0)) + N(1, 1)], -1)
    nn = F(0.2) * np.sqrt(s + F(0.0001))  # (R, C, 4)
    n = F(0.1) / nn
    c = hist[2 : 2 + hog_nr, 2 : 2 + hog_nc]  # (R, C, 18)
    lanes = np.minimum(c[..., None], nn[..., None, :]) * n[..., None, :]  # (R, C, 18, 4)
    out = np.zeros((hog_nr, hog_nc, 31), F)
    out[..., :18] = (lanes[..., 0] + lanes[..., 2]) + (lanes[..., 1] + lanes[..., 3])
    t = np.zeros((hog_nr, hog_nc, 4), F)
    for o in range(0, 18, 3):
        t = t + ((lanes[..., o, :] + lanes[..., o + 1, :]) + lanes[..., o + 2, :])
    ci = c[..., :9] + c[..., 9:]
    lanes = np.minimum(ci[..., None], nn[..., None, :]) * n[..., None, :]
    out[..., 18:27] = (lanes[..., 0] + lanes[..., 2]) + (lanes[..., 1] + lanes[..., 3])
    out[..., 27:] = t * F(2 * 0.2357)
    return out.reshape(-1)


def test_fhog_matches_reference_on_aligned_faces(aligned_faces):
    out = fhog(aligned_faces)
    assert out.shape == (8, 4464) and out.dtype == np.float32
    for face, got in zip(aligned_faces, out):
        np.testing.assert_array_equal(got, fhog_reference(face))
    # each orientation value sums 4 normalised lanes of at most 0.1
    assert out.min() >= 0 and out[:, :27].max() <= np.float32(0.4)  # 4 x 0.1 in float32 (numpy 1.x compares in double)


def test_fhog_synthetic_ties_and_sizes():
    rng = np.random.default_rng(3)
    # grey image: the three channels tie everywhere; quantised noise: many partial ties
    grey = np.repeat(rng.integers(0, 256, (112, 112, 1), dtype=np.uint8), 3, axis=2)
    quant = (rng.integers(0, 4, (112, 112, 3)) * 60).astype(np.uint8)
    odd = rng.integers(0, 256, (77, 93, 3), dtype=np.uint8)
    for img in (grey, quant):
        np.testing.assert_array_equal(fhog(img[None])[0], fhog_reference(img))
    np.testing.assert_array_equal(fhog(odd[None])[0], fhog_reference(odd))
    assert fhog(odd[None]).shape[1] == fhog_layout(77, 93).hog_nr * fhog_layout(77, 93).hog_nc * 31 == 8 * 10 * 31
    # greyscale input
    np.testing.assert_array_equal(fhog(grey[None, :, :, 0])[0], fhog_reference(grey[:, :, 0]))
    # an all-black face (failed frames) has an all-zero descriptor
    assert not fhog(np.zeros((1, 112, 112, 3), np.uint8)).any()


def test_fhog_batch_equals_single(aligned_faces):
    many = np.concatenate([aligned_faces] * 3)
    np.testing.assert_array_equal(fhog(many)[: len(aligned_faces)], fhog(aligned_faces))


@devices_only
def test_fhog_backends_agree(backend, aligned_faces):
    rng = np.random.default_rng(5)
    odd = rng.integers(0, 256, (2, 77, 93, 3), dtype=np.uint8)
    grey = np.ascontiguousarray(aligned_faces[:2, :, :, 1])
    for images in (aligned_faces, odd, grey):
        got = backend.asnumpy(backend.kernels.fhog(backend.asarray(images), 8))
        np.testing.assert_array_equal(got, fhog(images))


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_fhog_cu_compiles_with_nvrtc(arch):
    pytest.importorskip("cuda.bindings.nvrtc", reason="NVRTC check needs gpuau's [nvrtc] extra")
    from gpuau.kernels.nvrtc import compile_check

    res = compile_check("fhog", arch=arch)
    assert set(res.kernels) == {"fhog_pixels", "fhog_hist", "fhog_norm", "fhog_features"}


def test_fhog_matches_dlib_when_pyfhog_is_installed(aligned_faces):
    pyfhog = pytest.importorskip("pyfhog", reason="pyfhog (dlib's FHOG) is optional")
    # pyfhog wraps dlib's extract_fhog_features over a BGR image, as OpenFace calls it
    for face, got in zip(aligned_faces, fhog(aligned_faces)):
        np.testing.assert_array_equal(got, pyfhog.extract_fhog_features(face, 8).astype(F))


@two_cores
def test_split_batches_equal_serial(aligned_faces, monkeypatch):
    """A batch over the split threshold is shared with the helper thread: the same values as the
    serial pass (real aligned faces, odd and even counts)."""
    handed = []
    submit = threads.submit
    monkeypatch.setattr(threads, "submit", lambda fn, *args: handed.append(fn) or submit(fn, *args))
    for n in (len(aligned_faces), len(aligned_faces) - 1):
        with threads.sharing():  # the helper is not used: one serial pass
            serial = fhog(aligned_faces[:n])
        assert handed == []
        monkeypatch.setattr(cpu_fhog, "PARALLEL_MIN_FACES", n)
        np.testing.assert_array_equal(fhog(aligned_faces[:n]), serial)
        assert handed.pop()  # shared with the helper (which chunks it computed: tests/test_cpu_threads.py)
        monkeypatch.setattr(cpu_fhog, "PARALLEL_MIN_FACES", n + 1)
        fhog(aligned_faces[:n])
        assert handed == []  # below the threshold: not split
