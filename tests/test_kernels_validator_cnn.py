"""The validator CNN's layers (``validator_cnn.cu``) on every backend against their Numba twins, bit for bit
in the emulator, with the validator's own weights on real faces: default.wmv frames warped and normalised
around OpenFace's reference landmarks, through every view's network, layer by layer and whole
(``cnn_forward``), and the certainties of ``DetectionValidator.check_batch`` on the backend (warp,
normalisation and network there), also from frames already on the device (``staged``)."""
import numpy as np
import pytest

from backends import devices_only
from gpuau.cpu import validator_cnn as twin
from gpuau.cpu.paw import validator_faces
from gpuau.landmarks.paw import warp_coefficients
from gpuau.landmarks.validator import DetectionValidator, _view_arrays, cnn_forward, flatten_maps, validator_roi
from gpuau.models.validator_file import CONV, FULLY_CONNECTED, MAX_POOL
from gpuau.video.source import open_source
from reference import landmarks_2d, read_reference

FRAMES = (0, 40, 80, 120)


@pytest.fixture(scope="module")
def faces(reference_dir, media_dir):
    """(grey frames, reference landmarks, orientations) of FRAMES of default.wmv."""
    df = read_reference(reference_dir / "default.csv", nrows=max(FRAMES) + 1)
    grays = [f.gray for _, f in zip(range(max(FRAMES) + 1), open_source(media_dir / "default.wmv"))]
    lm = landmarks_2d(df)
    rot = df[["p_rx", "p_ry", "p_rz"]].to_numpy(np.float64)
    return [grays[i] for i in FRAMES], lm[list(FRAMES)], rot[list(FRAMES)]


def _inputs(validator, faces, view_index):
    """The FRAMES' faces warped and normalised for one view (as check_batch prepares them), (F, 60, 60)."""
    view = validator.model.views[view_index]
    grays, lm = faces[0], np.asarray(faces[1], np.float32)
    regions, local = zip(*(validator_roi(face, gray.shape) for gray, face in zip(grays, lm)))
    return validator_faces(np.stack(grays), np.arange(len(grays)), np.array(regions),
                           warp_coefficients(view.paw, np.stack(local)), *_view_arrays(view, validator.backend))


@devices_only
@pytest.mark.parametrize("view_index", [0, 3])
def test_layers_match_twins(backend, validator, faces, view_index):
    """Each layer's output equal to the twin's on the same input (the twin's chain), and the whole network."""
    x = _inputs(validator, faces, view_index)[:, None]
    layers = validator.model.views[view_index].layers
    for layer in layers:
        if layer.kind == CONV:
            expected = twin.convolution(x, layer.weights, layer.biases)
            got = backend.kernels.convolution(backend.asarray(x), backend.asarray(layer.weights),
                                              backend.asarray(layer.biases))
        elif layer.kind == MAX_POOL:
            expected = twin.max_pooling(x)
            got = backend.kernels.max_pooling(backend.asarray(x))
        elif layer.kind == FULLY_CONNECTED:
            x = flatten_maps(x) if x.ndim == 4 else x
            expected = twin.fully_connected(x, layer.weights, layer.biases)
            got = backend.kernels.fully_connected(backend.asarray(x), backend.asarray(layer.weights),
                                                  backend.asarray(layer.biases))
        else:
            expected, got = np.maximum(x, np.float32(0)), None
        if got is not None:
            np.testing.assert_array_equal(backend.asnumpy(got), expected)
        x = expected
    images = _inputs(validator, faces, view_index)
    np.testing.assert_array_equal(backend.asnumpy(cnn_forward(images, layers, backend)), cnn_forward(images, layers))


def test_check_batch_on_backend(backend, validator, faces):
    grays, lm, rot = faces
    on_backend = DetectionValidator(validator.model, backend)
    expected = validator.check_batch(grays, lm, rot)
    assert (expected > 0.7).all()
    np.testing.assert_array_equal(on_backend.check_batch(grays, lm, rot), expected)
    stack = backend.asarray(np.stack(grays).astype(np.float32))  # as the engine stages them
    staged = [(stack, i) for i in range(len(grays))]
    np.testing.assert_array_equal(on_backend.check_batch(grays, lm, rot, staged=staged), expected)


@devices_only
def test_max_pooling_clips_windows_past_the_edge_of_odd_maps(backend):
    """OpenFace's validator maps all have even sizes: odd ones run a pooling window past a map's edge, which must read
    neither the next row nor the next map."""
    rng = np.random.default_rng(11)
    maps = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    maps[..., 0] += 10.0  # a row's first value beats the last window of the row above, if that window ran past its end
    maps[..., 0, :] += 20.0  # and a map's first row the last window of the map before
    expected = twin.max_pooling(maps)
    assert expected.shape == (2, 3, 4, 5)  # round((7 - 2) / 2) + 1, round((9 - 2) / 2) + 1: windows past the edge
    got = backend.asnumpy(backend.kernels.max_pooling(backend.asarray(maps)))
    np.testing.assert_array_equal(got, expected)
