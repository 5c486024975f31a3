"""Quality presets of the landmark fit (``--quality exact|fast``) and scheduled re-detection
(``--detect-every N``): fast mode stays within its measured accuracy on default.wmv, exact is
OpenFace's model untouched, and the detector runs on the schedule."""
import numpy as np
import pytest

from gpuau.landmarks.clnf import PART_PARAMETERS, FitParameters
from gpuau.landmarks.quality import QUALITIES, Quality, get_quality, load_clnf
from gpuau.landmarks.tracker import FaceTracker
from gpuau.pipeline import Analyzer
from gpuau.video import open_source
from reference import compare, landmarks_2d, read_reference

N_FRAMES = 60


@pytest.fixture(scope="module")
def frames(media_dir):
    return [f for _, f in zip(range(N_FRAMES), open_source(media_dir / "default.wmv"))]


def test_exact_is_openface_model(models_dir):
    clnf = load_clnf(models_dir, "exact")
    assert clnf.parameters == FitParameters()
    assert [p.name for p in clnf.parts] == ["inner", "left_eye_28", "right_eye_28"]  # main_clnf_general.txt order
    for part in clnf.parts:
        assert part.parameters.window_sizes_init == PART_PARAMETERS[part.name]["window_sizes_init"]


def test_fast_fits_main_model_only(models_dir):
    clnf = load_clnf(models_dir, "fast")
    assert clnf.parts == [] and clnf.parameters == FitParameters()
    # a custom preset: the eye models at their finer patch scale only
    finer = dict(window_sizes_init=(0, 5))
    clnf = load_clnf(models_dir, Quality("eyes finer", parts={"left_eye_28": finer, "right_eye_28": finer, "inner": {}}))
    windows = {p.name: p.parameters.window_sizes_init for p in clnf.parts}
    assert windows == {"inner": (9,), "left_eye_28": (0, 5), "right_eye_28": (0, 5)}
    assert clnf.parts[0].parameters.sigma == PART_PARAMETERS["inner"]["sigma"]


def test_unknown_quality_is_refused():
    assert get_quality("fast") is QUALITIES["fast"]
    with pytest.raises(ValueError, match="quality='best'"):
        get_quality("best")
    with pytest.raises(ValueError, match="detect_every=0"):
        Analyzer("cpu", detect_every=0)


def test_fast_mode_accuracy(frames, reference_dir, shared, tmp_path):
    # Measured on these 60 frames: landmarks 0.61 px mean / 0.74 px p95 (exact: 0.017 / 0.031), AU r mean
    # 0.84 (exact: 0.92; the offline AU pass sees 60 frames only), AU_c agreement 0.989 (exact: 0.997).
    res = Analyzer("cpu", quality="fast").analyze_frames([f.image for f in frames])
    out = res.to_csv(tmp_path / "fast.csv")
    fig = compare(reference_dir / "default.csv", out, shared)
    assert fig["frames_both_success"] == N_FRAMES and fig["success_agreement"] == 1.0
    assert 0.2 < fig["landmark_mean_px"] < 1.0 and fig["landmark_p95_px"] < 1.2
    assert fig["au_r_mean"] >= 0.75
    assert fig["au_c_agreement_mean"] >= 0.97


class _CountingDetector:
    def __init__(self, box):
        self.box, self.frames, self.index = box, [], 0

    def detect(self, image):
        self.frames.append(self.index)
        return self.box


def _track(frames, box, detect_every, n):
    det = _CountingDetector(box)
    tracker = FaceTracker(detect=det.detect, validate=lambda gray, lm, rot: 0.9, detect_every=detect_every)
    for det.index, f in enumerate(frames[:n]):
        r = tracker.track(f.image, f.gray)
        assert r.success
    return det.frames


def test_detect_every_schedule(frames, reference_dir, models_dir):
    lm = landmarks_2d(read_reference(reference_dir / "default.csv", nrows=1))[0]
    box = np.array([lm[:, 0].min(), lm[:, 1].min(), np.ptp(lm[:, 0]), np.ptp(lm[:, 1])], np.float32)
    assert _track(frames, box, None, 12) == [0]  # OpenFace: detect only to start (tracking never fails here)
    assert _track(frames, box, 5, 12) == [0, 5, 10]


def test_detect_every_also_looks_for_a_face_not_found_yet(frames, reference_dir, models_dir):
    """A face that shows from frame 4: OpenFace looks for it on frames 0, 12, 24, ... and finds it on frame 12;
    detect_every=3 looks on frames 0, 3, 6, ... too, and finds it on frame 6."""
    lm = landmarks_2d(read_reference(reference_dir / "default.csv", nrows=1))[0]
    box = np.array([lm[:, 0].min(), lm[:, 1].min(), np.ptp(lm[:, 0]), np.ptp(lm[:, 1])], np.float32)
    for detect_every, looked, found in ((None, [0, 12], 12), (3, [0, 3, 6, 9, 12], 6)):
        det = _CountingDetector(box)
        tracker = FaceTracker(detect=lambda image: det.detect(image) if det.index >= 4 else det.frames.append(
            det.index), validate=lambda gray, lm, rot: 0.9, detect_every=detect_every)
        successes = [tracker.track(f.image, f.gray).success for det.index, f in enumerate(frames[:13])]
        assert det.frames == looked and successes.index(True) == found
