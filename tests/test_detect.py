"""MTCNN face detection on onnxruntime: graphs vs the NumPy forward pass, OpenFace's procedure on
real media, batching, edge cases."""
import cv2
import numpy as np
import pytest

from gpuau._deps import DependencyError
from gpuau.detect import MTCNN, Detections, select_face
from gpuau.detect import mtcnn as mtcnn_module
from gpuau.detect import proposals as P
from gpuau.detect.onnx_graphs import cnn_graph_file
from mtcnn_oracle import cnn_forward
from gpuau.detect.sessions import execution_providers, make_session
from media import read_frames
from reference import landmarks_2d, read_reference


def reference_landmarks(csv, frame):
    """x and y of every face OpenFace reports in ``frame``, each (faces, 68)."""
    df = read_reference(csv)
    lm = landmarks_2d(df[df["frame"] == frame], np.float64)
    return lm[..., 0], lm[..., 1]


@pytest.fixture(scope="module")
def detector(models_dir):
    return MTCNN(models_dir, device="cpu")


@pytest.fixture(scope="module")
def default_frames(media_dir):
    return read_frames(media_dir / "default.wmv", [0, 60, 120, 180, 240, 287])


def test_pnet_mosaic_matches_numpy_per_level(detector, default_frames):
    """One PNet run over the pyramid mosaic == the NumPy forward pass on each level alone."""
    frame = default_frames[0].astype(np.float32)
    levels = mtcnn_module.pyramid_levels(*frame.shape[:2])
    assert len(levels) == 7  # OpenFace: floor(log(60/480)/log(0.709)) + 1
    x, valid, offsets = mtcnn_module.pnet_mosaic([frame], levels)
    out = detector._pnet.run(None, {"input": x, "valid": valid})[0]
    per_level = mtcnn_module.pnet_level_outputs(out, detector.weights.pnet, levels, offsets)
    for (_, h, w), (oy, ox), got in zip(levels, offsets, per_level):
        alone = x[:, :, oy:oy + h, ox:ox + w]
        want = cnn_forward(detector.weights.pnet, alone)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("net, size", [("rnet", 24), ("onet", 48)])
def test_rnet_onet_graphs_match_numpy_on_real_crops(detector, default_frames, net, size):
    frame = default_frames[1].astype(np.float32)
    x, y, w, _ = detector.detect(default_frames[1]).boxes[0]
    # squared whole-pixel boxes around the face, some reaching outside the image (zero padding)
    boxes = np.array([[x + dx, y + dy, w + dw, w + dw] for dx in (-300, -20, 0, 25, 400)
                      for dy in (-250, 0, 30, 300) for dw in (-40, 0, 60)], np.float32).round()
    crops = P.crop_proposals(frame, boxes, size)
    batch = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2))
    weights = getattr(detector.weights, net)
    session = make_session(cnn_graph_file(weights, (size, size)), "cpu")
    got = session.run(None, {"input": batch})[0]
    want = cnn_forward(weights, batch)
    assert got.shape == (len(boxes), 6 if net == "rnet" else 16)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_one_face_per_frame_of_default(detector, default_frames):
    for frame, det in zip(default_frames, detector.detect_batch(default_frames)):
        assert isinstance(det, Detections)
        assert len(det) == 1
        assert det.boxes.shape == (1, 4) and det.points.shape == (1, 5, 2) and det.scores.shape == (1,)
        assert det.scores[0] > 0.9
        x, y, w, h = det.boxes[0]
        # ONet's eyes, nose and mouth lie inside the box, left eye left of the right one, eyes above mouth
        px, py = det.points[0].T
        assert np.all((px > x) & (px < x + w) & (py > y) & (py < y + h))
        assert px[0] < px[1] and py[0] < py[3] and py[1] < py[4]


def test_box_agrees_with_openface_landmarks_frame_1(detector, default_frames, reference_dir):
    """The CLNF box of frame 1 sits on OpenFace's converged landmarks (centre within 15 % of the size)."""
    xs, ys = reference_landmarks(reference_dir / "default.csv", 1)
    x, y, w, h = detector.detect(default_frames[0]).boxes[0]
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    assert abs(x + w / 2 - cx) < 0.15 * w and abs(y + h / 2 - cy) < 0.15 * h
    # and the box spans the landmarks' extent to within 15 %
    assert abs(w - (xs.max() - xs.min())) < 0.15 * w and abs(h - (ys.max() - ys.min())) < 0.15 * h


def test_multi_face_frame(detector, media_dir, reference_dir):
    (frame,) = read_frames(media_dir / "multi_face.avi", [0])
    det = detector.detect(frame)
    xs, ys = reference_landmarks(reference_dir / "multi_face.csv", 1)
    assert len(det) == len(xs) == 3
    centres = det.boxes[:, :2] + det.boxes[:, 2:] / 2
    for fx, fy in zip(xs, ys):  # every OpenFace face has a box centred on it
        d = np.hypot(centres[:, 0] - (fx.min() + fx.max()) / 2, centres[:, 1] - (fy.min() + fy.max()) / 2)
        assert d.min() < 0.15 * det.boxes[d.argmin(), 2]
    # FeatureExtraction's single-face choice is the widest box
    assert select_face(det) == int(np.argmax(det.boxes[:, 2]))


@pytest.mark.parametrize("name", ["sample1", "sample3", "sample5", "sample2"])
def test_sample_images_face_counts(detector, media_dir, reference_dir, name):
    """As many faces as OpenFace's reference output for the image."""
    image = cv2.imread(str(media_dir / f"{name}.jpg"))
    ref = read_reference(reference_dir / "images" / f"{name}.csv")
    assert len(detector.detect(image)) == len(ref)


def test_large_group_photo(detector, media_dir, reference_dir):
    image = cv2.imread(str(media_dir / "sample6.jpg"))  # 1944 x 1942, twelve faces
    ref = read_reference(reference_dir / "images" / "sample6.csv")
    assert len(detector.detect(image)) == len(ref) == 12


def test_batch_equals_single_and_is_deterministic(detector, default_frames, media_dir):
    (multi,) = read_frames(media_dir / "multi_face.avi", [20])
    small = cv2.resize(default_frames[2], (320, 240))
    images = [default_frames[0], multi, small, default_frames[3], np.zeros((480, 640, 3), np.uint8)]
    batch = detector.detect_batch(images)
    for image, got in zip(images, batch):
        want = detector.detect(image)
        for a, b in zip((got.boxes, got.scores, got.points), (want.boxes, want.scores, want.points)):
            np.testing.assert_array_equal(a, b)
    again = detector.detect_batch(images)
    for a, b in zip(batch, again):
        np.testing.assert_array_equal(a.boxes, b.boxes)


@pytest.mark.parametrize("image", [
    np.zeros((480, 640, 3), np.uint8),
    np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8),
    np.zeros((8, 8, 3), np.uint8),
    np.full((11, 300, 3), 128, np.uint8),
    np.zeros((100, 100), np.uint8),
    np.zeros((0, 0, 3), np.uint8),
], ids=["blank", "noise", "tiny", "thin", "grey", "empty"])
def test_no_face_no_error(detector, image):
    det = detector.detect(image)
    assert len(det) == 0 and det.boxes.shape == (0, 4) and det.points.shape == (0, 5, 2)
    assert select_face(det) is None


def test_grey_frame_is_expanded_like_openface(detector, default_frames):
    grey = cv2.cvtColor(default_frames[0], cv2.COLOR_BGR2GRAY)
    a = detector.detect(grey)
    b = detector.detect(np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert len(a) == 1


def test_a_large_frames_pnet_run_returns_its_memory(detector, default_frames, monkeypatch):
    """onnxruntime's arena would keep a large frame's PNet run's memory (3840x2160: ~170-270 MB) for good: such a run
    asks for the arena's shrinkage, a 640x480 frame's does not, and the face found in the frame enlarged 4.5 times
    (2880x2160) is the original's."""
    import cv2

    runs = []
    real = detector._pnet.run
    monkeypatch.setattr(detector._pnet, "run", lambda names, feeds, options=None: runs.append(options) or real(
        names, feeds, options))
    small = detector.detect(default_frames[0])
    large = detector.detect(cv2.resize(default_frames[0], (2880, 2160), interpolation=cv2.INTER_LINEAR))
    assert runs[0] is None
    assert runs[1].get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    assert len(small.boxes) == len(large.boxes) == 1
    (x0, y0, w0, h0), (x1, y1, w1, h1) = small.boxes[0], large.boxes[0] / 4.5
    overlap = max(0, min(x0 + w0, x1 + w1) - max(x0, x1)) * max(0, min(y0 + h0, y1 + h1) - max(y0, y1))
    assert overlap / (w0 * h0 + w1 * h1 - overlap) > 0.85  # the enlarged picture is softer: the box moves a little


def test_select_face_widest_or_nearest_to_a_preference_point():
    """The widest box, the first on a tie; with a preference point, the box whose centre (not its corner) is
    nearest."""
    det = Detections(np.array([[0, 0, 50, 50], [200, 200, 80, 80.]]), np.array([0.9, 0.8]), np.zeros((2, 5, 2)))
    assert select_face(det) == 1
    assert select_face(det, preference=(20, 20)) == 0
    det = Detections(np.array([[300, 0, 80, 80], [0, 0, 80, 80.], [100, 100, 60, 60]]), np.array([0.9, 0.95, 0.99]),
                     np.zeros((3, 5, 2)))
    assert select_face(det) == 0
    # (100, 100): 0 from the second box's corner, 110 from its centre, 71 from the first box's centre
    det = Detections(np.array([[0, 0, 100, 100], [100, 100, 220, 220.]]), np.array([0.9, 0.9]), np.zeros((2, 5, 2)))
    assert select_face(det, preference=(100, 100)) == 0


def test_both_onnxruntime_builds_installed_is_a_clear_error(monkeypatch, detector):
    import gpuau._deps

    monkeypatch.setattr(gpuau._deps, "installed_version", lambda dist: "1.0")
    with pytest.raises(DependencyError, match="onnxruntime-gpu"):
        make_session(cnn_graph_file(detector.weights.rnet, (24, 24)), "cpu")


def test_cuda_backend_uses_the_cuda_provider_only_when_onnxruntime_has_it():
    import onnxruntime as ort

    providers = execution_providers("cuda")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    assert (providers[0][0] == "CUDAExecutionProvider") == has_cuda
    assert providers[-1] == "CPUExecutionProvider" and execution_providers("cpu") == ["CPUExecutionProvider"]


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available provider names")
def test_a_cuda_provider_that_does_not_load_is_said_once_with_the_fix(detector, monkeypatch, caplog, capsys):
    """onnxruntime lists the CUDA provider for any GPU build and falls back to the CPU when its CUDA or cuDNN
    libraries do not load (onnxruntime-gpu 1.27+ on a CUDA 12 machine): MTCNN then ran on the CPU unsaid.  Here the
    CPU build is asked for it, as a GPU build with its libraries missing would be; the libraries of NVIDIA's wheels are
    preloaded first, as onnxruntime's documentation asks (onnxruntime.preload_dlls), once."""
    import logging

    from gpuau.detect import sessions

    import onnxruntime

    cuda = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    monkeypatch.setattr(sessions, "execution_providers", lambda *_: cuda)
    preloads = []

    def preload_dlls():  # onnxruntime-gpu's, which prints what it cannot load
        preloads.append(1)
        print("Failed to load libcudnn.so.9: cannot open shared object file")

    monkeypatch.setattr(onnxruntime, "preload_dlls", preload_dlls, raising=False)
    sessions._warn_cuda_provider_failed.cache_clear()
    monkeypatch.setattr(sessions, "_preloaded", [])
    graph = cnn_graph_file(detector.weights.rnet, (24, 24))
    with caplog.at_level(logging.WARNING, logger="gpuau.detect.sessions"):
        for _ in range(2):
            assert make_session(graph, "cuda").get_providers() == ["CPUExecutionProvider"]
    assert preloads == [1] and capsys.readouterr().out == ""  # once, before the first CUDA session; stdout untouched
    warned = [r.getMessage() for r in caplog.records if "could not load its CUDA execution provider" in r.getMessage()]
    assert len(warned) == 1 and "onnxruntime-gpu 1.27 and newer are built for CUDA 13" in warned[0]
    assert "'onnxruntime-gpu[cuda,cudnn]>=1.21,<1.27' for CUDA 12" in warned[0]
    caplog.clear()
    monkeypatch.undo()
    sessions._warn_cuda_provider_failed.cache_clear()
    make_session(graph, "cpu")  # asked for the CPU: nothing to say
    assert not caplog.records


def test_graph_files_are_cached_by_weights(detector, tmp_path, monkeypatch):
    monkeypatch.setenv("GPUAU_CACHE", str(tmp_path))
    p = cnn_graph_file(detector.weights.rnet, (24, 24))
    assert p.parent.parent == tmp_path and detector.weights.rnet.sha256[:16] in p.name
    mtime = p.stat().st_mtime_ns
    assert cnn_graph_file(detector.weights.rnet, (24, 24)) == p and p.stat().st_mtime_ns == mtime


def test_importing_the_detector_loads_no_onnx():
    import subprocess
    import sys

    code = "import sys, gpuau.detect; print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _onet(detector, boxes, probabilities, monkeypatch):
    """``detector._onet_stage`` on candidate ``boxes`` whose ONet face probabilities are ``probabilities`` and whose
    box regressions are zero (faked network output)."""
    boxes = np.asarray(boxes, np.float32)
    p = np.asarray(probabilities, np.float64)
    out = np.zeros((len(boxes), 16), np.float32)
    out[:, 1] = np.log(p / (1 - p))  # face_probability = 1 / (1 + exp(o0 - o1))
    monkeypatch.setattr(detector, "_run_crops", lambda net, frames, cands: [out])
    cands = [mtcnn_module._Candidates(boxes, np.zeros(len(boxes), np.float32), np.zeros((len(boxes), 4), np.float32))]
    (det,) = detector._onet_stage([np.zeros((480, 640, 3), np.uint8)], cands)
    return det


def test_onet_keeps_faces_from_openfaces_threshold_0_7(detector, monkeypatch):
    det = _onet(detector, [[100, 100, 80, 80], [300, 100, 80, 80], [100, 300, 80, 80]], [0.72, 0.69, 0.55],
                monkeypatch)
    assert len(det) == 1 and det.scores[0] == pytest.approx(0.72, abs=1e-6)


def test_onet_nms_divides_by_the_smaller_box(detector, monkeypatch):
    """A box inside a larger, more confident one overlaps it by 0.16 of their union but all of its own area: ONet's
    NMS (OpenFace's "Min") drops it; union NMS would keep both."""
    det = _onet(detector, [[100, 100, 200, 200], [150, 150, 80, 80]], [0.99, 0.95], monkeypatch)
    assert len(det) == 1
    np.testing.assert_allclose(det.boxes[0], P.clnf_box(np.array([[100, 100, 201, 201]], np.float32))[0])


def test_nms_ties_go_to_the_later_box_and_an_overlap_at_the_threshold_is_kept():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 10, 10]], np.float32)  # IoU 90 / 110
    assert P.non_maximum_suppression(boxes, np.array([0.8, 0.8], np.float32), 0.7, minimum=False).tolist() == [1]
    # intersection 7 over union 10: exactly float32(0.7), which is not above 0.7
    boxes = np.array([[0, 0, 10, 1], [0, 0, 7, 1]], np.float32)
    keep = P.non_maximum_suppression(boxes, np.array([0.9, 0.8], np.float32), 0.7, minimum=False)
    assert keep.tolist() == [0, 1]


def test_pyramid_starts_at_the_minimum_face_size_and_keeps_a_level_of_one_pnet_window():
    """FaceDetectorMTCNN::DetectFaces: the largest scale is 12 / min_face_size, each next one 0.709 times smaller, and
    a level 12 pixels high (one PNet window) is searched like any other."""
    assert mtcnn_module.pyramid_levels(60, 65) == [(0.2, 12, 13)]
    levels = mtcnn_module.pyramid_levels(480, 640, min_face_size=40)
    assert levels[0][0] == 12 / 40 and levels[1][0] == 12 / 40 * 0.709
    assert len(levels) == int(np.floor(np.log(40 / 480) / np.log(0.709))) + 1


def test_a_box_left_of_and_above_the_image_is_padded_with_zeros_where_openface_pads():
    """A box x, y, w, h takes the (h + 1) x (w + 1) pixels from (x - 1, y - 1); outside the image they are 0, the
    image's column 0 landing at int(-x + 1) (FaceDetectorMTCNN.cpp's start_x_out).  w = h = 47 and size 48 make the
    resize an identity, so the crop is compared pixel for pixel."""
    image = np.random.default_rng(4).integers(0, 256, (120, 160, 3), np.uint8)
    for x, y in ((-10.0, 5.0), (20.0, -7.0), (-3.0, -2.0)):
        want = np.zeros((48, 48, 3), np.float32)
        x0, y0 = max(int(-x + 1), 0), max(int(-y + 1), 0)
        xi, yi = max(int(x - 1), 0), max(int(y - 1), 0)
        want[y0:, x0:] = image[yi:yi + 48 - y0, xi:xi + 48 - x0]
        got = P.crop_proposals(image, np.array([[x, y, 47, 47]], np.float32), 48)[0]
        np.testing.assert_array_equal(got, P.normalise(want), err_msg=f"box at {x}, {y}")
