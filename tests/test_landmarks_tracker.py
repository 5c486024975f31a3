"""FaceTracker end to end on default.wmv (MTCNN detection, multi-hypothesis initialisation,
tracking, validation) against OpenFace's CSV, and its detect/track/validate logic with injected
callables."""
import types

import numpy as np
import pytest

from gpuau.landmarks.clnf import detect_landmarks
from gpuau.landmarks.tracker import ROTATION_HYPOTHESES, FaceTracker, best_hypothesis, fit_from_box
from gpuau.video import open_source
from reference import landmarks_2d, read_reference

N_FRAMES = 60


@pytest.fixture(scope="module")
def reference(reference_dir):
    df = read_reference(reference_dir / "default.csv", nrows=N_FRAMES)
    return df, landmarks_2d(df)


@pytest.fixture(scope="module")
def frames(media_dir):
    return [f for _, f in zip(range(N_FRAMES), open_source(media_dir / "default.wmv"))]


def test_end_to_end_matches_openface(frames, reference, models_dir):
    df, lm = reference
    tracker = FaceTracker()
    errors, conf = [], []
    for f, (t, row) in zip(frames, df.iterrows()):
        r = tracker.track(f.image, f.gray)
        assert r.success == bool(row["success"])
        errors.append(np.linalg.norm(r.landmarks - lm[t], axis=1).mean())
        conf.append(abs(r.confidence - row["confidence"]))
        np.testing.assert_allclose(r.params_global[1:4], row[["p_rx", "p_ry", "p_rz"]].to_numpy(float), atol=0.01)
    errors = np.array(errors)
    assert errors.mean() < 0.5 and np.percentile(errors, 95) < 1.5
    assert max(conf) < 0.011
    assert set(r.part_landmarks) == {"inner", "left_eye_28", "right_eye_28"}
    assert r.part_landmarks["left_eye_28"].shape == (28, 2)
    assert r.landmarks_3d.shape == (68, 3) and r.pose.shape == (6,)


class _Calls:
    """Detector and validator for a tracker: ``box`` for every detection, ``certainty`` for every validation
    (a list: one per validation, in order); records the frame of each detection."""

    def __init__(self, box, certainty):
        self.box, self.certainty, self.detections, self.validations = box, certainty, 0, 0
        self.detected_at: list = []
        self.tracker = None

    def track(self, frames, n=None):
        """A tracker using these calls (made on the first call) run over ``frames`` (``n`` times the first frame, when
        given); the last result."""
        if self.tracker is None:
            self.tracker = FaceTracker(detect=self.detect, validate=self.validate)
        for f in frames if n is None else [frames[0]] * n:
            r = self.tracker.track(f.image, f.gray)
        return r

    def detect(self, image):
        self.detections += 1
        if self.tracker is not None:
            self.detected_at.append(self.tracker.frame_index)
        return self.box

    def validate(self, gray, landmarks, orientation):
        self.validations += 1
        return self.certainty.pop(0) if isinstance(self.certainty, list) else self.certainty


@pytest.fixture(scope="module")
def first_box(reference):
    """A box around the first frame's reference landmarks."""
    lm = reference[1][0]
    return np.array([lm[:, 0].min(), lm[:, 1].min(), np.ptp(lm[:, 0]), np.ptp(lm[:, 1])], np.float32)


def test_no_face_retries_every_twelve_frames(frames, models_dir):
    calls = _Calls(None, 1.0)
    tracker = FaceTracker(detect=calls.detect, validate=calls.validate)
    for f in frames[:13]:
        r = tracker.track(f.image, f.gray)
        assert not r.success and r.confidence == 0
    # frame 0 and frame 12 (reinit_video_every * 6)
    assert calls.detections == 2 and calls.validations == 0
    calls = _Calls(None, 1.0)
    calls.track(frames, n=25)
    assert calls.detected_at == [0, 12, 24]  # every 12th frame, not just two in 13


def test_a_tracked_faces_first_failure_redetects_at_once(frames, first_box, models_dir):
    """After a frame tracked and validated, the next rejected fit re-detects in that frame (the failure count was
    reset to -1); a successful re-detection resets it again."""
    calls = _Calls(first_box, [0.9, 0.9, 0.1, 0.9])  # detected, tracked, tracking rejected, re-detection kept
    r = calls.track(frames[:3])
    assert calls.detected_at == [0, 2] and r.success and calls.tracker.failures_in_a_row == -1


def test_a_face_is_forgotten_after_a_hundred_failures(frames, first_box, models_dir):
    """DetectLandmarksInVideo drops the tracked face once failures_in_a_row passes 100 (then detects every 12th
    frame anew)."""
    calls = _Calls(first_box, [0.9] + [0.1] * 400)
    calls.track(frames[:1])
    calls.box = None  # the face is gone: re-detections find nothing
    n = 0
    while calls.tracker.tracking_initialised:
        calls.track(frames, n=1)
        n += 1
        assert n < 200
    assert n == 102 and calls.tracker.failures_in_a_row == 101


def test_failed_validation_triggers_redetection(frames, first_box, models_dir):
    calls = _Calls(first_box, 0.9)
    tracker = FaceTracker(detect=calls.detect, validate=calls.validate)
    r = tracker.track(frames[0].image, frames[0].gray)
    assert r.success and r.confidence == pytest.approx(0.9) and calls.detections == 1
    calls.certainty = 0.1  # the validator now rejects: the first failure re-detects (failures % 2 == 0)
    r = tracker.track(frames[1].image, frames[1].gray)
    assert calls.detections == 2 and not r.success and not r.detection_success
    # after a failure the next frame tracks with the initialisation windows, fails again (no re-detection)
    r = tracker.track(frames[2].image, frames[2].gray)
    assert calls.detections == 2 and tracker.failures_in_a_row == 1


@pytest.mark.slow
@pytest.mark.parametrize("video", ["default.wmv", "changeLighting.wmv", "2015-10-15-15-14.avi"])
def test_whole_video_matches_openface(video, media_dir, reference_dir, models_dir):
    df = read_reference(reference_dir / (video.rsplit(".", 1)[0] + ".csv"))
    ref = {int(frame): i for i, frame in enumerate(df["frame"])}
    success, landmarks = df["success"].to_numpy(), landmarks_2d(df, np.float64)
    tracker = FaceTracker()
    errors, agree, n = [], 0, 0
    for f in open_source(media_dir / video):
        r = tracker.track(f.image, f.gray)
        i = ref.get(f.index + 1)
        if i is None:
            continue
        n += 1
        agree += int(r.success == bool(success[i]))
        if r.success and success[i]:
            errors.append(np.linalg.norm(r.landmarks - landmarks[i], axis=1).mean())
    errors = np.array(errors)
    assert agree >= 0.98 * n
    assert errors.mean() < 0.5 and np.percentile(errors, 95) < 1.5


def test_rotation_hypotheses_batch_equals_one_at_a_time(frames, reference, clnf):
    """The 11 rotation hypotheses fitted as one batch pick the fit the sequential loop picks, to the bit."""
    _, lm = reference
    box = np.array([lm[0][:, 0].min(), lm[0][:, 1].min(), np.ptp(lm[0][:, 0]), np.ptp(lm[0][:, 1])], np.float32)
    gray = frames[0].gray
    best = fit_from_box(clnf, gray, box)
    pdm = clnf.model.pdm
    zeros = np.zeros(pdm.n_modes, np.float32)
    fits = [detect_landmarks(clnf, gray, pdm.calc_params_from_box(box, zeros, rot), zeros)
            for rot in ROTATION_HYPOTHESES]
    lls = [f.likelihood for f in fits]
    one = fits[int(np.argmax(lls))]
    assert best.likelihood == max(lls)
    np.testing.assert_array_equal(best.landmarks, one.landmarks)
    np.testing.assert_array_equal(best.params_local, one.params_local)


def test_best_hypothesis_keeps_the_first_on_ties():
    """fit_from_box keeps the highest likelihood among the rotation hypotheses, the first on ties, a fit without a
    likelihood counting with the one before it (CLNF's ``model_likelihood`` kept from the previous fit)."""
    fits = [types.SimpleNamespace(likelihood=ll) for ll in (-5.0, None, -7.0)]
    assert best_hypothesis(fits) is fits[0] and fits[0].likelihood == -5.0
    fits = [types.SimpleNamespace(likelihood=ll) for ll in (-9.0, -4.0, -4.0)]
    assert best_hypothesis(fits) is fits[1]
