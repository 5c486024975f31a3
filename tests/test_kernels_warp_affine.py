"""warp_affine on every backend: bit-exact with OpenCV 4.10's cv2.warpAffine (what OpenFace ran with),
and identical across backends on real frames of default.wmv."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from backends import assert_backend_close, devices_only, two_cores
from gpuau.cpu import threads
from gpuau.cpu import warp_affine as cpu_warp
from gpuau.cpu.warp_affine import warp_affine as warp_affine_cpu
from gpuau.cpu.warp_affine import warp_affine_masked as warp_affine_masked_cpu
from media import read_frames

GOLDEN = Path(__file__).parent / "data" / "warp_affine_opencv410.npz"
FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
OPENCV_FIXED_POINT = tuple(int(v) for v in cv2.__version__.split(".")[:2]) < (4, 11)


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def frames(media_dir):
    """Frames 0, 50, ..., 250 of default.wmv (BGR)."""
    return np.stack(read_frames(media_dir / "default.wmv", range(0, 251, 50)))


def random_similarities(rng, n, height, width, scale=(0.3, 2.5), margin=60.0):
    """dst->src similarity maps centred anywhere from ``margin`` px outside the image to inside it."""
    s = rng.uniform(*scale, n)
    theta = rng.uniform(-np.pi, np.pi, n)
    tx = rng.uniform(-margin, width + margin, n)
    ty = rng.uniform(-margin, height + margin, n)
    a, b = s * np.cos(theta), s * np.sin(theta)
    return np.stack([np.stack([a, -b, tx], -1), np.stack([b, a, ty], -1)], 1)


def gray_f32(gray):
    return gray.astype(np.float32) * np.float32(0.731) + np.float32(0.1234)


@pytest.mark.parametrize(
    "images, matrices, expected, size, border",
    [
        ("gray", "patch_matrices", "patch_u8", (27, 33), 0),
        ("gray", "patch_matrices", "patch_u8_border", (27, 33), 77),
        ("gray_f32", "patch_matrices_f32", "patch_f32", (27, 33), 0),
        ("bgr", "align_matrices", "align_bgr", (112, 112), 0),
    ],
)
def test_warp_affine_matches_opencv410(backend, golden, images, matrices, expected, size, border):
    src = gray_f32(golden["gray"]) if images == "gray_f32" else golden[images]
    m = golden[matrices]
    out = backend.kernels.warp_affine(
        backend.asarray(src[None]), backend.asarray(np.zeros(len(m), np.int32)), backend.asarray(m), *size, border
    )
    assert_backend_close(backend, out, golden[expected], exact=True)


def test_golden_data_covers_borders(golden):
    """The golden patches include outputs inside, across and wholly outside the image."""
    out = golden["patch_u8_border"].reshape(len(golden["patch_matrices"]), -1)
    all_border = (out == 77).all(1)
    some_border = (out == 77).any(1) & ~all_border
    assert all_border.sum() >= 3 and some_border.sum() >= 5 and (~(out == 77).any(1)).sum() >= 5


@pytest.mark.skipif(not OPENCV_FIXED_POINT, reason="installed OpenCV >= 4.11 warps with float coordinates")
def test_golden_data_is_installed_opencv(golden):
    for m, exp in zip(golden["patch_matrices"], golden["patch_u8"]):
        np.testing.assert_array_equal(cv2.warpAffine(golden["gray"], m, (33, 27), flags=FLAGS), exp)


@devices_only
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_warp_affine_frames_backends_agree(backend, frames, dtype):
    """68 areas of interest x 6 real frames per call, borders included: every backend == the Numba oracle."""
    rng = np.random.default_rng(7)
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames])
    images = gray if dtype == np.uint8 else gray.astype(np.float32) / np.float32(3.0)
    n = 68 * len(images)
    matrices = random_similarities(rng, n, *gray.shape[1:])
    index = np.repeat(np.arange(len(images), dtype=np.int32), 68)
    expected = warp_affine_cpu(images, index, matrices, 21, 23)
    out = backend.kernels.warp_affine(backend.asarray(images), backend.asarray(index), backend.asarray(matrices), 21, 23)
    assert_backend_close(backend, out, expected, exact=True)
    if OPENCV_FIXED_POINT:
        for k in rng.choice(n, 20, replace=False):
            ref = cv2.warpAffine(images[index[k]], matrices[k], (23, 21), flags=FLAGS)
            np.testing.assert_array_equal(expected[k], ref)


@devices_only
def test_warp_affine_bgr_float_matrices(backend, frames):
    """3-channel frames with float32 matrices (as OpenFace stores them); an index outside the
    batch gives an all-border output."""
    rng = np.random.default_rng(11)
    matrices = random_similarities(rng, 12, *frames.shape[1:3], scale=(0.5, 1.5)).astype(np.float32)
    index = np.array([0, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, -1], np.int32)
    expected = warp_affine_cpu(frames, index, matrices, 40, 30, border=3)
    out = backend.kernels.warp_affine(backend.asarray(frames), backend.asarray(index), backend.asarray(matrices), 40, 30, 3)
    assert_backend_close(backend, out, expected, exact=True)
    assert expected.shape == (12, 40, 30, 3)
    assert (expected[-1] == 3).all()


def test_warp_affine_identity_and_integer_shift(backend, golden):
    """An integer translation copies pixels exactly (OpenCV's weight table corner case ax = ay = 0)."""
    gray = golden["gray"]
    m = np.array([[[1.0, 0.0, 5.0], [0.0, 1.0, 7.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    out = backend.asnumpy(
        backend.kernels.warp_affine(backend.asarray(gray[None]), backend.asarray(np.zeros(2, np.int32)), backend.asarray(m), 50, 60)
    )
    np.testing.assert_array_equal(out[0], gray[7:57, 5:65])
    np.testing.assert_array_equal(out[1], gray[:50, :60])


def test_warp_affine_rejects_bad_arguments():
    with pytest.raises(ValueError):
        warp_affine_masked_cpu(np.zeros((1, 10, 10), np.uint8), [0], np.zeros((1, 2, 3)), 4, 4,
                               np.zeros((1, 3, 2)), [[0, 1, 3]])
    img = np.zeros((1, 10, 10), np.uint8)
    m = np.zeros((1, 2, 3))
    with pytest.raises(TypeError):
        warp_affine_cpu(img.astype(np.int16), [0], m, 4, 4)
    with pytest.raises(ValueError):
        warp_affine_cpu(img, [0, 0], m, 4, 4)
    with pytest.raises(ValueError):
        warp_affine_cpu(img, [0], m, 0, 4)
    assert warp_affine_cpu(img, np.zeros(0, np.int32), np.zeros((0, 2, 3)), 4, 5).shape == (0, 4, 5)


def test_warp_affine_masked_degenerate_triangles(backend, frames):
    """Triangles that OpenFace's raster scan carries past their bounding box (a collinear one: its
    point-in-triangle test holds on the whole line) and NaN corners: the kernel's serial replay for
    such faces gives the Numba scan's mask, on uint8 BGR and float32 grey."""
    rng = np.random.default_rng(3)
    points = rng.uniform(5, 55, (4, 9, 2)).astype(np.float32)
    points[:, 6:9] = [[10.0, 20.0], [20.0, 20.0], [30.0, 20.0]]  # collinear on row 20
    points[2, 3] = np.nan
    tris = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [1, 4, 7], [0, 3, 6]], np.int32)
    matrices = random_similarities(rng, 4, *frames.shape[1:3], scale=(0.5, 1.5))
    index = np.array([0, 3, 5, 1], np.int32)
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]).astype(np.float32) / np.float32(3.0)
    for images in (frames, gray):
        expected = warp_affine_masked_cpu(images, index, matrices, 60, 64, points, tris)
        warped = warp_affine_cpu(images, index, matrices, 60, 64)
        out = backend.kernels.warp_affine_masked(backend.asarray(images), backend.asarray(index),
                                                 backend.asarray(matrices), 60, 64, backend.asarray(points), tris)
        assert_backend_close(backend, out, expected, exact=True)
        # a collinear triangle's test holds everywhere (one factor of each side test is 0): once the
        # scan reaches it at (10, 20) it is carried over every later pixel, boxes notwithstanding
        np.testing.assert_array_equal(expected[:, 20, 10:], warped[:, 20, 10:])
        np.testing.assert_array_equal(expected[:, 21:], warped[:, 21:])
        assert (expected[:, :20] == 0).mean() > 0.3



@two_cores
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_split_batches_equal_serial(frames, monkeypatch, dtype):
    """A batch over the split threshold is shared with the helper thread: the same pixels as the
    serial pass (112x112 BGR faces and grey areas of real frames, odd and even counts, borders and
    an all-border output included)."""
    rng = np.random.default_rng(13)
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames])
    handed = []
    submit = threads.submit
    monkeypatch.setattr(threads, "submit", lambda fn, *args: handed.append(fn) or submit(fn, *args))
    for images, size in ((frames, (112, 112)), (gray, (21, 23))):
        images = images if dtype == np.uint8 else gray_f32(images)
        matrices = random_similarities(rng, 25, *frames.shape[1:3])
        index = rng.integers(0, len(frames), 25).astype(np.int32)
        index[7] = len(frames)  # outside the batch: all border
        for n in (25, 24):
            args = images, index[:n], matrices[:n], *size
            with threads.sharing():  # the helper is not used: one serial pass
                serial = warp_affine_cpu(*args, border=5)
            assert handed == []
            monkeypatch.setattr(cpu_warp, "PARALLEL_MIN_VALUES", serial.size)
            np.testing.assert_array_equal(warp_affine_cpu(*args, border=5), serial)
            assert handed.pop()  # shared with the helper (which chunks it warped: tests/test_cpu_threads.py)
            monkeypatch.setattr(cpu_warp, "PARALLEL_MIN_VALUES", serial.size + 1)
            warp_affine_cpu(*args, border=5)
            assert handed == []  # below the threshold: not split
