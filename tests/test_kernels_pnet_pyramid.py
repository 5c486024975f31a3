"""pnet_pyramid on every backend: PNet's input mosaic (every pyramid level of a batch of frames,
cv::resize INTER_LINEAR of the float frame, normalised, RGB planes) equals the Numba twin bit for bit
and cv2.resize to float rounding, on real default.wmv frames; MTCNN on the emulated backend builds its
mosaic with the kernel and finds the same faces."""
import cv2
import numpy as np
import pytest

from backends import assert_backend_close
from gpuau.cpu.pnet_pyramid import pnet_pyramid as pnet_pyramid_cpu
from gpuau.detect import MTCNN
from gpuau.detect.mtcnn import pack_levels, pyramid_levels
from gpuau.detect.sessions import run_bound
from media import read_frames


@pytest.fixture(scope="module")
def frames(media_dir):
    """Frames 0, 100, 200 of default.wmv (BGR uint8)."""
    return np.stack(read_frames(media_dir / "default.wmv", [0, 100, 200]))


def cv2_mosaic(frames, sizes, offsets, canvas):
    """The mosaic as gpuau built it before the kernel: cv2.resize of the float frame per level."""
    mosaic = np.zeros((len(frames), *canvas, 3), np.float32)
    for frame, out in zip(frames, mosaic):
        for (h, w), (y, x) in zip(sizes, offsets):
            out[y:y + h, x:x + w] = cv2.resize(frame.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return ((mosaic - np.float32(127.5)) * np.float32(0.0078125))[..., ::-1].transpose(0, 3, 1, 2)


# OpenFace's pyramid of a 640x480 frame, and sizes off the pyramid: exactly 2x down (OpenCV's
# INTER_AREA shortcut), upscaled, odd ratios, a single column.
SIZES = {
    "pyramid": [(h, w) for _, h, w in pyramid_levels(480, 640)],
    "other": [(240, 320), (700, 901), (37, 641), (481, 7), (1, 1), (13, 2)],
}


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("which", sorted(SIZES))
def test_pnet_pyramid_matches_cv2_resize(backend, frames, dtype, which):
    images = frames if dtype == np.uint8 else frames.astype(np.float32) * np.float32(0.77) + np.float32(3.1)
    sizes = SIZES[which]
    offsets, canvas = pack_levels(sizes)
    expected = pnet_pyramid_cpu(images, sizes, offsets, *canvas)
    out = backend.kernels.pnet_pyramid(backend.asarray(images), sizes, offsets, *canvas)
    assert_backend_close(backend, out, expected, exact=True)
    assert expected.shape == (3, 3, *canvas)
    # cv::resize is float arithmetic: equal to its rounding (bit for bit with the OpenCV 4.10 and 5.0
    # x86-64 wheels); 1e-5 normalised is 1.3e-3 grey levels
    np.testing.assert_allclose(expected, cv2_mosaic(images, sizes, offsets, canvas), rtol=0, atol=1e-5)
    if which == "pyramid":
        outside = np.ones(canvas, bool)
        for (h, w), (y, x) in zip(sizes, offsets):
            outside[y:y + h, x:x + w] = False
        assert outside.any() and (expected[:, :, outside] == np.float32(-0.99609375)).all()


def test_pnet_pyramid_other_dtypes_and_errors(frames):
    sizes = SIZES["pyramid"][:3]
    offsets, canvas = pack_levels(sizes)
    np.testing.assert_array_equal(pnet_pyramid_cpu(frames.astype(np.uint16), sizes, offsets, *canvas),
                                  pnet_pyramid_cpu(frames, sizes, offsets, *canvas))
    with pytest.raises(ValueError, match="canvas"):
        pnet_pyramid_cpu(frames, sizes, offsets, sizes[0][0] - 1, canvas[1])
    with pytest.raises(ValueError, match="frames"):
        pnet_pyramid_cpu(frames[..., 0], sizes, offsets, *canvas)
    assert pnet_pyramid_cpu(frames[:0], sizes, offsets, *canvas).shape == (0, 3, *canvas)


def test_mtcnn_on_emulated_builds_the_mosaic_with_the_kernel(models_dir, frames, monkeypatch):
    from gpuau.kernels.pnet_pyramid import pnet_pyramid

    emulated = MTCNN(models_dir, device="emulated")
    calls = []

    def spy(*args):
        calls.append(len(args[0]))
        return pnet_pyramid(emulated.backend, *args)

    monkeypatch.setattr(emulated.backend.kernels, "pnet_pyramid", spy, raising=False)
    found = emulated.detect_batch(list(frames))
    assert calls == [len(frames)]  # one launch for every level of every frame
    for det, ref in zip(found, MTCNN(models_dir, device="cpu").detect_batch(list(frames))):
        assert len(det) == len(ref) == 1
        np.testing.assert_array_equal(det.boxes, ref.boxes)
        np.testing.assert_array_equal(det.scores, ref.scores)


class DeviceArray:
    """A NumPy array seen through ``__cuda_array_interface__`` only (as onnxruntime sees a CuPy array)."""

    def __init__(self, a):
        self.a = np.ascontiguousarray(a)
        self.__cuda_array_interface__ = {"shape": self.a.shape, "typestr": self.a.dtype.str, "strides": None,
                                         "data": (self.a.ctypes.data, False), "version": 3}


def test_run_bound_feeds_device_arrays_in_place(models_dir, frames):
    """The IO-binding path MTCNN takes on CUDA, exercised with host memory: same PNet output as session.run."""
    det = MTCNN(models_dir, device="cpu")
    levels = pyramid_levels(480, 640)
    from gpuau.detect.mtcnn import pnet_mosaic

    x, valid, _ = pnet_mosaic(list(frames[:2]), levels)
    want = det._pnet.run(None, {"input": x, "valid": valid})[0]
    got = run_bound(det._pnet, {"input": DeviceArray(x), "valid": valid}, "cpu", 0)[0]
    np.testing.assert_array_equal(got, want)


def test_pyramid_kernel_resources():
    pytest.importorskip("cuda.bindings.nvrtc", reason="NVRTC compile checks need gpuau's [nvrtc] extra")
    from gpuau.kernels.nvrtc import compile_check

    result = compile_check("pyramid", arch="sm_90")
    assert set(result.kernels) == {"pnet_pyramid_u8", "pnet_pyramid_f32"}
    assert all(k.registers <= 64 and k.shared_bytes == 0 for k in result.kernels.values())
    assert b"fma.rn.f32" in result.ptx  # the written fmaf lerps, as cv::resize rounds them
