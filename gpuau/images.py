"""Every face of a single image, as OpenFace's ``FaceLandmarkImg`` analyses it.

MTCNN finds all faces; each is fitted once from its box (OpenFace's default ``multi_view = false``:
one zero-rotation initialisation, the initial search windows, then the validator), and every face
gets a row, whether or not its fit is validated, with the static AU models (see
:func:`gpuau.au.predict_static_aus`). The table has FaceLandmarkImg's ``face, confidence`` columns
instead of FeatureExtraction's ``frame, face_id, timestamp, confidence, success``.

Port of the per-image loop of FaceLandmarkImg.cpp and of ``RecorderCSV``'s non-sequence rows
(RecorderCSV.cpp).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from gpuau.landmarks.clnf import CLNF
from gpuau.landmarks.multi import start_from_box, without_reinit
from gpuau.landmarks.tracker import FaceTracker, LandmarkResult


def fit_faces(image_bgr: np.ndarray, gray8: np.ndarray, boxes: np.ndarray, clnf: CLNF, validate: Callable,
              intrinsics=None, device="cpu") -> "list[LandmarkResult]":
    """Landmarks, pose and confidence of each face box of one image.

    Port of ``DetectLandmarksInImage`` with a bounding box (LandmarkDetectorFunc.cpp) as
    FaceLandmarkImg calls it: one CLNF model, re-initialised from every box.

    Parameters
    ----------
    image_bgr : ndarray (H, W, 3) uint8
    gray8 : ndarray (H, W) uint8
    boxes : ndarray (N, 4)
        ``x, y, width, height`` of each face (MTCNN's order).
    clnf : CLNF
    validate : callable
        ``validate(gray8, landmarks (68, 2), orientation (3,)) -> certainty``.
    intrinsics : (fx, fy, cx, cy), optional
        Default: OpenFace's guess from the image size.
    device : str or Backend
        Where the CLNF fits run.

    Returns
    -------
    list of LandmarkResult
        One per box; ``success`` is the validator's verdict, ``confidence`` its certainty.
    """
    tracker = FaceTracker(without_reinit(clnf), detect=lambda image: None, validate=validate, intrinsics=intrinsics,
                          device=device)
    return [start_from_box(tracker, image_bgr, gray8, box) for box in np.asarray(boxes).reshape(-1, 4)]

