"""Shape similarity (``backend.kernels.similarity``: OpenFace's ``AlignShapesWithScale`` and its inverse) on
every backend.

The oracle is OpenFace's own header code built as OpenFace builds it against OpenCV 4.6, stored with
its inputs in ``data/similarity_opencv46.npz`` (``data/make_similarity_opencv46.py``): the pairs the
landmark fit forms (tracked shapes of the three reference videos against each patch scale's reference
shape), the AU alignment's rigid points, random, mirrored and collinear shapes, and a single point.
"""
from pathlib import Path

import numpy as np
import pytest

from ccnf_steps import similarity_to_reference
from gpuau.cpu.similarity import similarity

GOLDEN = Path(__file__).parent / "data" / "similarity_opencv46.npz"


@pytest.fixture(scope="module")
def golden():
    """(src, dst, OpenFace's result) per pair."""
    with np.load(GOLDEN) as d:
        ends = np.cumsum(d["sizes"])
        return [(s, t, r) for s, t, r in zip(np.split(d["src"], ends[:-1]), np.split(d["dst"], ends[:-1]), d["result"])]


def assert_same_bits(actual, expected):
    """Equal bit for bit where finite; NaN where NaN (a NaN's payload is the hardware's)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype == np.float32 and actual.shape == expected.shape
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan)
    np.testing.assert_array_equal(actual[~nan].view(np.int32), expected[~nan].view(np.int32))


def test_similarity_equals_openface(backend, golden):
    sizes = sorted({len(s) for s, _, _ in golden})
    assert {68, 24}.issubset(sizes)
    for n in sizes:
        group = [g for g in golden if len(g[0]) == n]
        out = backend.kernels.similarity(backend.asarray(np.stack([g[0] for g in group])),
                                         backend.asarray(np.stack([g[1] for g in group])))
        assert_same_bits(backend.asnumpy(out), np.stack([g[2] for g in group]))


def test_one_target_shape_for_all(backend, golden):
    src = np.stack([s for s, _, _ in golden if len(s) == 68])
    dst = golden[0][1]
    one = similarity(src, dst[None])
    assert_same_bits(one, similarity(src, np.repeat(dst[None], len(src), axis=0)))
    assert_same_bits(one[3], similarity(src[3:4], dst[None])[0])
    assert_same_bits(backend.asnumpy(backend.kernels.similarity(backend.asarray(src), backend.asarray(dst[None]))), one)


def test_similarity_to_reference_of_one_face_and_of_a_stack(golden):
    src, dst, expected = golden[0]
    to_ref, to_img = similarity_to_reference(src, dst)
    assert_same_bits(to_ref, expected[0])
    assert_same_bits(to_img, expected[1])
    stack = similarity_to_reference(np.stack([src, src]), np.stack([dst, dst]))
    assert stack[0].shape == stack[1].shape == (2, 2, 2)
    assert_same_bits(stack[1][1], expected[1])


def test_mirrored_shapes_give_a_rotation_not_a_reflection(golden):
    src = golden[0][0]
    a = similarity(src[None], (src * np.float32([-1, 1]))[None])[0, 0]
    assert np.linalg.det(a.astype(np.float64)) > 0


@pytest.mark.parametrize("src, dst, message", [
    (np.zeros((2, 68, 3)), np.zeros((2, 68, 2)), "src"),
    (np.zeros((2, 68, 2)), np.zeros((3, 68, 2)), "dst"),
    (np.zeros((2, 68, 2)), np.zeros((2, 24, 2)), "dst"),
])
def test_similarity_rejects_mismatched_shapes(src, dst, message):
    with pytest.raises(ValueError, match=message):
        similarity(src, dst)
