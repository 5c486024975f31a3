"""CNN detection validator: model file, piece-wise affine warp, and OpenFace's ``confidence`` column
reproduced from the reference landmarks and pose."""
import cv2
import numpy as np
import pytest

from gpuau.landmarks.validator import (
    VALIDATION_BOUNDARY,
    certainty_from_scores,
    cnn_forward,
    detection_outcome,
    select_view,
    validator_roi,
)
from gpuau.cpu.validator_cnn import convolution, fully_connected, max_pooling
from mtcnn_oracle import max_pool
from gpuau.models.validator_file import CONV, FULLY_CONNECTED, MAX_POOL, RELU, VALIDATOR_FILE, parse_validator
from gpuau.models.store import model_file
from gpuau.video.source import open_source
from reference import landmarks_2d, read_reference


def _reference_inputs(reference_dir, media_dir, name):
    df = read_reference(reference_dir / f"{name}.csv")
    lm = landmarks_2d(df)
    rot = df[["p_rx", "p_ry", "p_rz"]].to_numpy(np.float64)
    video = next(media_dir.glob(f"{name}.*"))
    gray = [f.gray for f in open_source(video)]
    return df, lm, rot, gray


def _confidences(validator, df, lm, rot, gray):
    frames = df["frame"].to_numpy() - 1
    return np.array([validator.check(gray[f], lm[i], rot[i]) for i, f in enumerate(frames)])


def test_model_file(models_dir, validator):
    m = validator.model
    assert len(m.views) == 7
    np.testing.assert_allclose(np.degrees(m.orientations[:, 1]), [0, -20, -45, -70, 20, 45, 70])
    np.testing.assert_array_equal(m.orientations[:, [0, 2]], 0)
    for view in m.views:
        assert [layer.kind for layer in view.layers] == [CONV, RELU, MAX_POOL, CONV, RELU, MAX_POOL,
                                                         FULLY_CONNECTED, RELU, FULLY_CONNECTED]
        assert view.layers[0].weights.shape == (10, 1, 9, 9) and view.layers[3].weights.shape == (10, 10, 7, 7)
        assert view.layers[6].weights.shape == (1000, 50) and view.layers[8].weights.shape == (50, 30)
        assert view.paw.pixel_mask.shape == (60, 60)
        assert view.mean.shape == view.std.shape == (view.paw.number_of_pixels,)
        np.testing.assert_array_equal(view.paw.pixel_mask, view.paw.triangle_id >= 0)
    arrays = parse_validator(model_file(VALIDATOR_FILE))
    assert arrays["view3/paw/triangulation"].shape == (31, 3)


def test_convolution_is_cross_correlation(validator):
    layer = validator.model.views[0].layers[3]
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((2, 10, 26, 26)).astype(np.float32)
    out = convolution(maps, layer.weights, layer.biases)
    assert out.shape == (2, 10, 20, 20)
    for b, k in ((0, 2), (1, 7)):
        expected = sum(cv2.filter2D(maps[b, i], -1, layer.weights[k, i], anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)[:20, :20]
                       for i in range(10)) + layer.biases[k]
        np.testing.assert_allclose(out[b, k], expected, rtol=1e-4, atol=1e-4)


def test_convolution_and_fully_connected_sum_in_im2col_order(validator):
    """Each output adds its products one at a time in OpenFace's im2col column order (input map,
    kernel column, kernel row), then the bias: bit for bit a float32 NumPy loop in that order."""
    rng = np.random.default_rng(3)
    for layer, shape in ((validator.model.views[2].layers[0], (2, 1, 60, 60)), (validator.model.views[2].layers[3], (1, 10, 26, 26))):
        maps = rng.standard_normal(shape).astype(np.float32)
        n_out, n_in, kh, kw = layer.weights.shape
        yb, xb = shape[2] - kh + 1, shape[3] - kw + 1
        acc = np.zeros((shape[0], n_out, yb, xb), np.float32)
        for i in range(n_in):
            for kx in range(kw):
                for ky in range(kh):
                    acc = acc + layer.weights[None, :, i, ky, kx, None, None] * maps[:, i, None, ky:ky + yb, kx:kx + xb]
        np.testing.assert_array_equal(convolution(maps, layer.weights, layer.biases), acc + layer.biases[:, None, None])
    fc = validator.model.views[2].layers[6]
    x = rng.standard_normal((3, 1000)).astype(np.float32)
    acc = np.zeros((3, 50), np.float32)
    for k in range(1000):
        acc = acc + x[:, k, None] * fc.weights[k]
    np.testing.assert_array_equal(fully_connected(x, fc.weights, fc.biases), acc + fc.biases)


def test_max_pooling_matches_the_mtcnn_oracle():
    """Same OpenFace max_pooling as the MTCNN reference forward pass, incl. clipped windows."""
    maps = np.random.default_rng(5).standard_normal((2, 3, 9, 12)).astype(np.float32)
    for kernel, stride in ((2, 2), (3, 2)):
        np.testing.assert_array_equal(max_pooling(maps, kernel, stride), max_pool(maps, kernel, kernel, stride, stride))


def test_batched_forward_equals_one_by_one(validator):
    view = validator.model.views[0]
    faces = np.random.default_rng(4).standard_normal((3, 2, 60, 60)).astype(np.float32)
    scores = cnn_forward(faces, view.layers)
    assert scores.shape == (3, 2, 30)
    for i in range(3):
        for j in range(2):
            np.testing.assert_array_equal(scores[i, j], cnn_forward(faces[i, j], view.layers))


def test_view_selection_and_certainty_bins(validator):
    o = validator.model.orientations
    assert select_view(o, [0.1, 0.05, 0.3]) == 0
    assert select_view(o, [0.0, np.radians(-50), 0.0]) == 2
    assert select_view(o, [0.0, np.radians(55), 0.0]) == 5  # nearer 45 than 70
    scores = np.zeros(30, np.float32)
    scores[0] = 1
    assert certainty_from_scores(scores) == pytest.approx(59 / 60, abs=1e-6)
    scores[29] = 2
    assert certainty_from_scores(scores) == pytest.approx(1 / 60, abs=1e-6)


def test_detection_outcome():
    assert detection_outcome(True, 0.98) == (True, 0.98)
    assert detection_outcome(True, 0.725) == (False, 0.725)  # strictly above the boundary
    assert detection_outcome(False, 0.98) == (False, 0.0)
    assert detection_outcome(True, None, validate=False) == (True, 1.0)
    assert VALIDATION_BOUNDARY == 0.725


def test_landmarks_outside_image_give_zero(validator):
    gray = np.zeros((480, 640), np.uint8)
    lm = np.full((68, 2), -50.0, np.float32) + np.random.default_rng(2).uniform(0, 10, (68, 2)).astype(np.float32)
    assert validator.check(gray, lm, np.zeros(3)) == 0.0


@pytest.mark.parametrize("name", ["default", "changeLighting"])
def test_reference_confidence_single_face(validator, reference_dir, media_dir, name):
    df, lm, rot, gray = _reference_inputs(reference_dir, media_dir, name)
    conf = _confidences(validator, df, lm, rot, gray)
    np.testing.assert_array_equal(np.round(conf, 2), df["confidence"].to_numpy())


def test_reference_confidence_multi_face(validator, reference_dir, media_dir):
    """2107 faces with confidences across the whole range.  The reference landmarks are printed to
    0.1 px; jittering them by that much moves about 0.4% of faces to a neighbouring bin, so a
    few mismatches are expected from the input rounding alone."""
    df, lm, rot, gray = _reference_inputs(reference_dir, media_dir, "multi_face")
    conf = _confidences(validator, df, lm, rot, gray)
    ref = df["confidence"].to_numpy()
    exact = np.abs(np.round(conf, 2) - ref) < 1e-6
    assert exact.mean() >= 0.99
    assert np.mean(np.abs(conf - ref) <= 0.1) >= 0.995
    assert np.mean((conf > VALIDATION_BOUNDARY) == (df["success"].to_numpy() == 1)) >= 0.998


def test_the_validators_region_is_openfaces_crop():
    """DetectionValidator::Check: the landmarks' box grown by 3 px, each bound truncated to int and clipped to
    [0, cols - 1] x [0, rows - 1], so the image's last column and row are never read; the landmarks move with it."""
    lm = np.array([[10.7, 20.2], [100.9, 60.0], [50.0, 120.5]], np.float32)
    region, local = validator_roi(lm, (480, 640))
    assert region == (7, 17, 103 - 7, 123 - 17)
    np.testing.assert_array_equal(local, lm - np.float32([7, 17]))
    past = np.array([[600.5, 400.5], [700.0, 500.0]], np.float32)  # past the right and bottom edges
    assert validator_roi(past, (480, 640))[0] == (597, 397, 639 - 597, 479 - 397)
    assert validator_roi(-past, (480, 640))[0][:2] == (0, 0)


def test_a_face_whose_region_is_one_pixel_wide_is_not_validated(validator):
    """A region less than 2 pixels wide or high gives certainty 0 without running the network (every bin gives at
    least 1/60)."""
    gray = np.random.default_rng(3).integers(0, 256, (480, 640), np.uint8)
    lm = np.stack([np.linspace(-40.0, -1.5, 68), np.linspace(100.0, 200.0, 68)], axis=1).astype(np.float32)
    assert validator_roi(lm, gray.shape)[0][2] == 1
    assert validator.check(gray, lm, np.zeros(3)) == 0.0
    assert validator.check(gray, lm[:, ::-1].copy(), np.zeros(3)) == 0.0  # one pixel high
