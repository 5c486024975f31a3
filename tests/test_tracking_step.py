"""Each frame's tracking step taken from OpenFace's own state, against OpenFace's result for that frame.

Tracking amplifies rounding (``benchmarks/bench_noise_floor.py``), so whole-video comparisons measure
how far two exact implementations drift apart, not whether each step is OpenFace's. Here the tracker
starts every frame from OpenFace's state after the frame before: its PDM parameters, landmarks,
success and failure count, read from OpenFace 2.0.2's ``FeatureExtraction`` built on this project's
machine kind with its CSV precision raised to 9 digits (float32 values exactly; nothing else
changed), kept in ``tests/data/openface-precise`` (frame, confidence, success, landmarks, PDM
parameters). The steps include tracking, validation, failures and re-detections: the sideways clip
(``derived_media``) fails two frames in three and is searched again every second frame.
"""
import gzip
import io
from pathlib import Path

import cv2

import numpy as np
import pandas as pd
import pytest

from derived_media import clip_frames
from media import read_frames
from reference import GLOBAL_PARAMS, LOCAL_PARAMS, landmarks_2d

DATA = Path(__file__).parent / "data" / "openface-precise"
MAX_FAILURES = 100
"""Failures in a row after which OpenFace forgets the face (``DetectLandmarksInVideo``)."""


def openface_states(name: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(gzip.decompress((DATA / f"{name}.csv.gz").read_bytes())), skipinitialspace=True)


@pytest.fixture(scope="module")
def models():
    from gpuau import Analyzer

    return Analyzer(device="cpu").loaded_models()


def steps_from_openface(models, frames: list, ref: pd.DataFrame) -> "tuple[np.ndarray, np.ndarray, list]":
    """Success, confidence and landmarks of each frame tracked from OpenFace's state after the frame before."""
    from gpuau.landmarks.tracker import FaceTracker

    clnf, mtcnn, validator = models
    tracker = FaceTracker(clnf, detect=mtcnn.detect_box, validate=validator.check)
    success, confidence, landmarks = [], [], []
    ok = ref["success"].to_numpy() > 0.5
    lm = landmarks_2d(ref)
    failures = -1
    for i, image in enumerate(frames):
        if i:
            failures = -1 if ok[i - 1] else failures + 1
            tracker.tracking_initialised = bool(ok[:i].any()) and failures <= MAX_FAILURES
            tracker.detection_success, tracker.failures_in_a_row = bool(ok[i - 1]), failures
            tracker.params_global = ref[GLOBAL_PARAMS].iloc[i - 1].to_numpy(np.float32)
            tracker.params_local = ref[LOCAL_PARAMS].iloc[i - 1].to_numpy(np.float32)
            tracker.landmarks, tracker.frame_index = lm[i - 1], i
        r = tracker.track(image, cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        success.append(r.success)
        confidence.append(r.confidence)
        landmarks.append(r.landmarks)
    return np.array(success), np.array(confidence), landmarks


@pytest.mark.parametrize("name", ["default", "sideways"])
def test_every_step_is_openfaces(name, models, media_dir):
    ref = openface_states(name)
    n = len(ref)
    frames = read_frames(media_dir / "default.wmv", n) if name == "default" else clip_frames(name, media_dir)[0][:n]
    success, confidence, landmarks = steps_from_openface(models, frames, ref)

    # the same outcome on every frame (tracked, failed validation, re-detected) but, on the sideways clip, one
    # where the validator is on a knife edge: there its certainty jumps between 0.017 and 0.983 when OpenFace's
    # landmarks move by 0.001 px (measured at frame 110, gpuau's fit 0.005 px from OpenFace's); fed OpenFace's
    # own landmarks it must give OpenFace's certainty
    ok = ref["success"].to_numpy() > 0.5
    differ = np.flatnonzero(success != ok)
    assert len(differ) <= (0 if name == "default" else 1), differ
    clnf, _, validator = models
    for i in differ:
        gray = cv2.cvtColor(frames[i], cv2.COLOR_BGR2GRAY)
        orientation = ref[GLOBAL_PARAMS].iloc[i].to_numpy(np.float32)[1:4]
        assert validator.check(gray, landmarks_2d(ref)[i], orientation) == pytest.approx(ref["confidence"].iloc[i], abs=1e-6)
    # the validator's certainty (30 bins) on every frame but at most one (measured: all on default.wmv,
    # 287 of 288 on the sideways clip)
    assert np.sum(np.abs(confidence - ref["confidence"].to_numpy()) > 1e-6) <= (0 if name == "default" else 1)
    ref_lm = landmarks_2d(ref)
    both = np.flatnonzero(success & ok)
    err = np.array([np.hypot(*(landmarks[i] - ref_lm[i]).T).mean() for i in both])
    # measured 0.0006 px median and 0.019 max on default.wmv (frame 1, the detection from MTCNN's box one
    # float32 ulp off, 0.0055); the sideways clip's poorly determined fits spread more (median 0.0034, max 0.24;
    # 0.0065 and 0.46 before the CCNF maps were OpenFace's)
    if name == "default":
        assert np.median(err) < 0.002 and err.max() < 0.05
    else:
        assert np.median(err) < 0.02 and err.max() < 1.0
