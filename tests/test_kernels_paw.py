"""The detection validator's input kernel (``validator_faces`` in ``warp.cu``) on every backend against its
Numba twin, bit for bit in the emulator, on real faces: default.wmv frames and OpenFace's reference landmarks,
a frontal and a profile view, uint8 and float32 frames, several frames in one stack, and regions cut by the
image border.  The twin against the NumPy port of ``PAW::Warp`` + ``NormaliseWarpedToVector``."""
import numpy as np
import pytest

from gpuau.cpu.paw import remap, validator_faces
from gpuau.landmarks.paw import warp_coefficients, warp_maps
from gpuau.landmarks.validator import _view_arrays, face_rank, validator_roi
from gpuau.video.source import open_source
from reference import landmarks_2d, read_reference

FRAMES = (0, 60, 120, 180)


@pytest.fixture(scope="module")
def faces(reference_dir, media_dir):
    """Grey frames (F, H, W) uint8 and reference landmarks (F, 68, 2) of FRAMES of default.wmv; the last face
    moved 300 px left and 250 px up so that its region is cut by the image's corner."""
    df = read_reference(reference_dir / "default.csv", nrows=max(FRAMES) + 1)
    grays = [f.gray for _, f in zip(range(max(FRAMES) + 1), open_source(media_dir / "default.wmv"))]
    lm = landmarks_2d(df)[list(FRAMES)].astype(np.float32)
    lm[-1] -= np.array([300, 250], np.float32)
    return np.stack([grays[i] for i in FRAMES]), lm


def _batch(validator, faces, view_index):
    """validator_faces' arguments for every face of ``faces`` seen from one view (as check_batch makes them)."""
    grays, lm = faces
    regions, local = zip(*(validator_roi(face, grays.shape[1:]) for face in lm))
    view = validator.model.views[view_index]
    return np.array(regions), warp_coefficients(view.paw, np.stack(local)), view


def _numpy_reference(gray, region, coefficients_face, view):
    """PAW::Warp of the region (``paw.warp``'s maps and remap, tested against OpenCV 4.10's remap), then
    NormaliseWarpedToVector and the view's normalisation, in NumPy."""
    left, top, width, height = region
    roi = gray[top:top + height, left:left + width].astype(np.float32)
    warped = remap(roi, *warp_maps(view.paw, coefficients_face))
    mask_t = view.paw.pixel_mask.T.astype(bool)
    vec = warped.T[mask_t]
    mean = vec.mean(dtype=np.float64)
    std = np.sqrt(max(np.mean(np.square(vec, dtype=np.float64)) - mean * mean, 0.0))
    vec = (vec - np.float32(mean)) * np.float32(1.0 / (std if std != 0 else 1.0))
    img_t = np.zeros(mask_t.shape, np.float32)
    img_t[mask_t] = (vec - view.mean) / view.std
    return img_t.T


@pytest.mark.parametrize("view_index", [0, 3])
def test_twin_is_paw_warp_and_normalisation(validator, faces, view_index):
    grays, lm = faces
    regions, coefficients, view = _batch(validator, faces, view_index)
    got = validator_faces(grays, np.arange(len(grays)), regions, coefficients, *_view_arrays(view, validator.backend))
    assert got.shape == (len(grays),) + view.paw.triangle_id.shape
    for f in range(len(grays)):
        expected = _numpy_reference(grays[f], regions[f], coefficients[f], view)
        # serial float64 sums instead of NumPy's pairwise ones: the same float32 centre and scale here
        np.testing.assert_array_equal(got[f], expected)
    inside = face_rank(view.paw.pixel_mask) >= 0
    assert not got[:, ~inside].any() and np.abs(got[:, inside]).mean() > 0.1


@pytest.mark.parametrize("view_index", [0, 3])
def test_kernel_matches_twin(backend, validator, faces, view_index):
    """uint8 and float32 frames, faces of several frames (in scrambled order) in one stack, one region cut
    by the image's corner."""
    grays, lm = faces
    regions, coefficients, view = _batch(validator, faces, view_index)
    index = np.array([2, 0, 3, 1])
    arrays = _view_arrays(view, validator.backend)
    expected = validator_faces(grays, index, regions[index], coefficients[index], *arrays)
    assert regions[3][0] == 0 and regions[3][1] == 0  # the moved face's region starts at the corner
    for frames in (grays, grays.astype(np.float32)):
        got = backend.kernels.validator_faces(backend.asarray(frames), backend.asarray(index),
                                              backend.asarray(regions[index]), backend.asarray(coefficients[index]),
                                              *_view_arrays(view, backend))
        np.testing.assert_array_equal(backend.asnumpy(got), expected)
