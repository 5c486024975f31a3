"""Several faces per video, tracked as OpenFace's ``FaceLandmarkVidMulti`` tracks them.

A fixed number of model slots (4), each a :class:`~gpuau.landmarks.tracker.FaceTracker` that never
re-detects on its own. Every 8th frame, while a slot is free, MTCNN looks for all faces; detections
that overlap a tracked face are dropped and free slots take the rest in detection order. A slot is freed at the start
of the frame after its sixth failed frame in a row (``failures_in_a_row``, which starts at -1, over 4). The slot number
is the CSV's ``face_id``.

Port of the frame loop and ``NonOverlapingDetections`` of FaceLandmarkVidMulti.cpp as of the sources that wrote the
reference CSVs (2.0.2), and of ``DetectLandmarksInVideo`` with a bounding box (LandmarkDetectorFunc.cpp).  2.2.0 changed
this executable (#693): its overlap test is a true intersection over union (2.0.2's divides by the areas' sum less
twice the intersection, so it drops a detection overlapping a tracked face by about a third, 2.2.0 by half), and it
switches off the lower-numbered of two slots whose faces overlap by more than half.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from gpuau.landmarks.clnf import CLNF
from gpuau.landmarks.tracker import FaceTracker, LandmarkResult

_F = np.float32

MAX_FACES = 4
"""``num_faces_max``: model slots."""

DETECT_EVERY = 8
"""Frames between face detections (while a slot is free)."""

MAX_FAILURES = 4
"""A slot whose ``failures_in_a_row`` exceeds this is freed and reset."""

OVERLAP = 0.5
"""A detection overlapping a model's box by more than this (OpenFace's ratio) is already tracked."""


def without_reinit(clnf: CLNF) -> CLNF:
    """The same model with ``reinit_video_every = -1``: trackers never call their own detector.

    FaceLandmarkVidMulti sets this so that only its own detection step starts faces; the model
    arrays are shared, not copied.
    """
    return replace(clnf, parameters=replace(clnf.parameters, reinit_video_every=-1))


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """Bounding box of a model's landmarks (``CLNF::GetBoundingBox``).

    Parameters
    ----------
    landmarks : ndarray (68, 2) float32

    Returns
    -------
    ndarray (4,) float32
        ``x, y, width, height``.
    """
    lo = landmarks.min(axis=0).astype(_F)
    hi = landmarks.max(axis=0).astype(_F)
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], _F)


def _intersection_area(a: np.ndarray, b: np.ndarray) -> float:
    """Area of ``cv::Rect_<float> a & b`` (0 for disjoint boxes), in float32 as OpenCV computes it."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    w = min(a[0] + a[2], b[0] + b[2]) - x1
    h = min(a[1] + a[3], b[1] + b[3]) - y1
    if w <= 0 or h <= 0:
        return 0.0
    return float(_F(w) * _F(h))


def non_overlapping(boxes: np.ndarray, model_boxes: np.ndarray) -> np.ndarray:
    """Indices of the detections that no model is tracking yet (``NonOverlapingDetections``).

    A detection is dropped when ``intersection / union > 0.5`` for any model box, with OpenFace's
    union ``area(model) + area(detection) - 2 * intersection`` (sic). Every model's box takes part,
    including free slots (their landmarks are all 0, so their box overlaps nothing).

    Parameters
    ----------
    boxes : ndarray (N, 4)
        Detections ``x, y, width, height``.
    model_boxes : ndarray (M, 4)
        :func:`landmark_box` of each model slot.

    Returns
    -------
    ndarray (K,) int
        Indices into ``boxes``, in order.
    """
    boxes = np.asarray(boxes, _F).reshape(-1, 4)
    keep = np.ones(len(boxes), bool)
    for m in np.asarray(model_boxes, _F).reshape(-1, 4):
        for d in range(len(boxes) - 1, -1, -1):
            if not keep[d]:
                continue
            inter = _intersection_area(m, boxes[d])
            union = float(_F(m[2] * m[3]) + _F(boxes[d, 2] * boxes[d, 3])) - 2 * inter
            if (inter / union > OVERLAP) if union != 0 else inter > 0:  # x / 0 is inf (or nan for 0 / 0) in C++
                keep[d] = False
    return np.flatnonzero(keep)


def start_from_box(tracker: FaceTracker, image_bgr: np.ndarray, gray8: np.ndarray, box) -> LandmarkResult:
    """Reset ``tracker`` and fit its model once from a face box (no rotation hypotheses).

    Port of ``CLNF::Reset`` followed by ``DetectLandmarksInVideo`` with a bounding box: the PDM is
    placed in the box with zero rotation and local parameters, and one fit with the initial
    (wide) search windows is validated. With OpenFace's default ``multi_view = false`` this is also
    ``DetectLandmarksInImage`` (FaceLandmarkImg).

    Parameters
    ----------
    tracker : FaceTracker
        Built on a :func:`without_reinit` model, so the fit cannot call its detector.
    image_bgr : ndarray (H, W, 3) uint8
    gray8 : ndarray (H, W) uint8
    box : array_like (4,)
        ``x, y, width, height``.

    Returns
    -------
    LandmarkResult
    """
    tracker.reset()
    pdm = tracker.clnf.model.pdm
    tracker.params_global = pdm.calc_params_from_box(np.asarray(box, _F), tracker.params_local)
    tracker.tracking_initialised = True
    return tracker.track(image_bgr, gray8)


class MultiFaceTracker:
    """Tracking state of up to :data:`MAX_FACES` faces across the frames of one video.

    Parameters
    ----------
    clnf : CLNF
        Loaded model (its ``reinit_video_every`` is overridden, see :func:`without_reinit`).
    detect_all : callable
        ``detect_all(image_bgr) -> boxes (N, 4)`` ``x, y, w, h``: every face MTCNN finds, in its order.
    validate : callable
        As for :class:`~gpuau.landmarks.tracker.FaceTracker`.
    intrinsics : (fx, fy, cx, cy), optional
        Camera intrinsics for the pose; by default OpenFace's from the frame size.
    max_faces : int
    detect_every : int
    device : str or Backend
        Where the CLNF fits run.
    """

    def __init__(self, clnf: CLNF, *, detect_all: Callable, validate: Callable, intrinsics=None,
                 max_faces: int = MAX_FACES, detect_every: int = DETECT_EVERY, device="cpu"):
        clnf = without_reinit(clnf)
        self._detect_all = detect_all
        self.detect_every = detect_every
        self.slots = [FaceTracker(clnf, detect=lambda image: None, validate=validate, intrinsics=intrinsics,
                                  device=device) for _ in range(max_faces)]
        self.active = [False] * max_faces
        self.frame_count = 0

    def track(self, image_bgr: np.ndarray, gray8: np.ndarray) -> "list[tuple[int, LandmarkResult]]":
        """Track the faces in the next frame (and start new ones on a detection frame).

        Parameters
        ----------
        image_bgr : ndarray (H, W, 3) uint8
        gray8 : ndarray (H, W) uint8

        Returns
        -------
        list of (face_id, LandmarkResult)
            One entry per active slot, in slot order, whether or not its fit succeeded this frame
            (FaceLandmarkVidMulti writes a row for each).
        """
        boxes = np.zeros((0, 4), _F)
        if self.frame_count % self.detect_every == 0 and not all(self.active):
            boxes = np.asarray(self._detect_all(image_bgr), _F).reshape(-1, 4)
        boxes = boxes[non_overlapping(boxes, [landmark_box(s.landmarks) for s in self.slots])]
        free = list(range(len(boxes)))
        results = {}
        for k, tracker in enumerate(self.slots):
            if tracker.failures_in_a_row > MAX_FAILURES:
                self.active[k] = False
                tracker.reset()
            if not self.active[k]:
                if free:
                    results[k] = start_from_box(tracker, image_bgr, gray8, boxes[free.pop(0)])
                    self.active[k] = True
            else:
                results[k] = tracker.track(image_bgr, gray8)
        self.frame_count += 1
        return [(k, results[k]) for k in range(len(self.slots)) if self.active[k]]
