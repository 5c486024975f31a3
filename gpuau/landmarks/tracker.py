"""Per-frame face tracking as FeatureExtraction does it: track from the previous frame's
parameters, validate, and re-detect with MTCNN + multi-hypothesis CLNF initialisation when
tracking is lost.

Port of ``LandmarkDetector::DetectLandmarksInVideo``, ``DetectLandmarksInImage`` and
``DetectLandmarksInImageMultiHypBasic`` (LandmarkDetectorFunc.cpp), the validation at the end of
``CLNF::DetectLandmarks`` (LandmarkDetectorModel.cpp) and ``GetPose`` / ``CLNF::GetShape`` for the
reported pose and 3D landmarks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from gpuau.device import Backend, resolve_device
from gpuau.landmarks.clnf import CLNF, FitResult, detect_landmarks_batch, frame_images
from gpuau.landmarks.gaze import eye_gaze, eye_landmarks_3d, eye_parts
from gpuau.landmarks.pose import head_poses, landmarks_3d

_F = np.float32

# Initial rotations (pitch, yaw, roll) tried on a new detection (DetectLandmarksInImage, multi_view).
ROTATION_HYPOTHESES = np.array(
    [
        [0, 0, 0],
        [0, -0.5236, 0],
        [0, 0.5236, 0],
        [0, -0.96, 0],
        [0, 0.96, 0],
        [0, 0, 0.5236],
        [0, 0, -0.5236],
        [0, -1.57, 0],
        [0, 1.57, 0],
        [0, -1.22, 0.698],
        [0, 1.22, -0.698],
    ],
    dtype=np.float64,
).astype(_F)


@dataclass
class LandmarkResult:
    """Landmarks of one frame, as FeatureExtraction records them.

    Attributes
    ----------
    success : bool
        ``DetectLandmarksInVideo``'s return value (the CSV's ``success``).
    detection_success : bool
        The model's ``detection_success`` (what FaceAnalyser is given).
    confidence : float
        ``detection_certainty`` (the CSV's ``confidence``).
    landmarks : ndarray (68, 2) float32
    params_global : ndarray (6,) float32
    params_local : ndarray (34,) float32
    landmarks_3d : ndarray (68, 3) float32 or None
        Camera-space landmarks (``CLNF::GetShape``), mm; None from a tracker made with
        ``camera_space=False`` until its caller fills it.
    pose : ndarray (6,) float32 or None
        ``(Tx, Ty, Tz, Rx, Ry, Rz)`` (``GetPose``); None like ``landmarks_3d``.
    part_landmarks : dict
        Part name -> ``(k, 2)`` landmarks of the hierarchical models (the eyes' 28 points each
        give the CSV's ``eye_lmk_x_*``, ``eye_lmk_y_*``).
    part_params : dict
        Part name -> ``(params_global, params_local)`` of the hierarchical models.
    gaze : ndarray (8,) float32 or None
        ``gaze_0_x..gaze_angle_y`` (:func:`~gpuau.landmarks.gaze.eye_gaze`); None without both eye models
        (``--quality fast``) and, like ``pose``, until filled.
    eye_landmarks_3d : ndarray (56, 3) float32 or None
        The eyes' camera-space landmarks (``eye_lmk_X_*``...), mm; None like ``gaze``.
    likelihood : float
        Model log-likelihood.
    """

    success: bool
    detection_success: bool
    confidence: float
    landmarks: np.ndarray
    params_global: np.ndarray
    params_local: np.ndarray
    landmarks_3d: "np.ndarray | None"
    pose: "np.ndarray | None"
    part_landmarks: dict = field(default_factory=dict)
    part_params: dict = field(default_factory=dict)
    likelihood: float = -10.0
    gaze: "np.ndarray | None" = None
    eye_landmarks_3d: "np.ndarray | None" = None


def camera_space_outputs(clnf: CLNF, results: list, intrinsics: list, backend: "str | Backend" = "cpu") -> None:
    """Fill the head pose, the camera-space 3D landmarks and, when the fit has both eye models, the eyes' 3D
    landmarks and the gaze of landmark results, for many faces at once (one
    :func:`~gpuau.landmarks.pose.head_poses` call, on ``backend``); pose and landmarks come from each face's
    3D shape (``PDM::CalcShape3D``), computed once.

    Port of ``GetPose``, ``CLNF::GetShape``, ``Calculate3DEyeLandmarks`` and ``EstimateGaze`` as
    FeatureExtraction records them (:mod:`gpuau.landmarks.gaze`); the gaze is computed whatever the fit's
    outcome, and the caller writes zeros where OpenFace does not estimate it.

    Parameters
    ----------
    clnf : CLNF
        The model the results were fitted with.
    results : list of LandmarkResult
        Updated in place (``pose``, ``landmarks_3d``, ``eye_landmarks_3d``, ``gaze``).
    intrinsics : list of (fx, fy, cx, cy)
        Each result's camera.
    backend : str or Backend
    """
    if not results:
        return
    pdm = clnf.model.pdm
    landmarks = np.stack([r.landmarks for r in results])
    shapes = np.stack([pdm.calc_shape_3d(r.params_local) for r in results])
    params = np.stack([r.params_global for r in results])
    camera = np.array(intrinsics, _F).reshape(len(results), 4)
    poses = head_poses(landmarks, shapes, params, camera, backend=backend)
    points = landmarks_3d(landmarks, shapes, params, *camera.T[:, :, None])
    for r, pose, xyz in zip(results, poses, points):
        r.pose, r.landmarks_3d = pose, xyz
    eyes = eye_parts(clnf)
    if not eyes:
        return
    eye_points = eye_landmarks_3d(eyes, [r.part_landmarks for r in results], [r.part_params for r in results],
                                  camera)
    gaze = eye_gaze(points, poses[:, 3:], eye_points)
    for r, xyz, g in zip(results, eye_points, gaze):
        r.eye_landmarks_3d, r.gaze = xyz.reshape(-1, 3), g


def initial_parts(clnf: CLNF) -> "tuple[dict, dict]":
    """``(part_landmarks, part_params)`` of a model that has not fitted yet (``CLNF::Read``): landmarks at 0,
    scale 1, no rotation, translation or shape; empty when the fit leaves the parts out.  ``CLNF::Reset``
    keeps the parts' state, which the CSV's ``eye_lmk_*`` columns show until a fit replaces it."""
    if not clnf.parameters.refine_hierarchical:
        return {}, {}
    landmarks = {p.name: np.zeros((p.model.pdm.n_points, 2), _F) for p in clnf.parts}
    params = {p.name: (np.array([1, 0, 0, 0, 0, 0], _F), np.zeros(p.model.pdm.n_modes, _F)) for p in clnf.parts}
    return landmarks, params


def fit_from_box(clnf: CLNF, gray8: np.ndarray, box, *, hypotheses: np.ndarray = ROTATION_HYPOTHESES,
                 previous_likelihood: float = -10.0, backend: "str | Backend" = "cpu", images=None) -> FitResult:
    """Fit the CLNF from a face box trying several initial head rotations; keep the best.

    Port of ``DetectLandmarksInImage`` with ``multi_view`` (as ``DetectLandmarksInVideo`` calls it
    on a new detection) and ``DetectLandmarksInImageMultiHypBasic``, LandmarkDetectorFunc.cpp:
    for each rotation the params are placed in the box (``PDM::CalcParams`` with the box, local
    params 0) and fitted with the initialisation windows and the part models (all hypotheses in
    one batch); the fit with the highest model likelihood wins (the first on ties).  The validator
    plays no part in the choice, so the caller validates only the returned fit.

    Parameters
    ----------
    clnf : CLNF
    gray8 : ndarray (H, W) uint8
    box : array_like (4,)
        ``x, y, w, h`` (MTCNN's box in OpenFace's CLNF convention).
    hypotheses : ndarray (k, 3) float32
        Initial Euler angles, in order.
    previous_likelihood : float
        The model likelihood before this call (OpenFace keeps it for a fit that stops before
        computing one).
    backend : str or Backend
    images : (1, H, W) float32, optional
        :func:`frame_images` of ``gray8``, when the caller has it already.

    Returns
    -------
    FitResult
        The best fit; ``likelihood`` is set.
    """
    g0 = box_hypotheses(clnf, box, hypotheses)
    if images is None:
        images = frame_images(gray8, backend)
    fits = detect_landmarks_batch(clnf, images, np.zeros(len(g0), np.int64), g0,
                                  np.zeros((len(g0), clnf.model.pdm.n_modes), _F), clnf.parameters.window_sizes_init,
                                  backend=backend)
    return best_hypothesis(fits, previous_likelihood)


def box_hypotheses(clnf: CLNF, box, hypotheses: np.ndarray = ROTATION_HYPOTHESES) -> np.ndarray:
    """Global params of each initial rotation placed in a face box (``PDM::CalcParams`` with the box,
    local params 0): the starts of :func:`fit_from_box`'s fits, ``(k, 6)`` float32."""
    pdm = clnf.model.pdm
    box = np.asarray(box, _F)
    zeros = np.zeros(pdm.n_modes, _F)
    return np.stack([pdm.calc_params_from_box(box, zeros, rot) for rot in hypotheses])


def best_hypothesis(fits: list, previous_likelihood: float = -10.0) -> FitResult:
    """The fit :func:`fit_from_box` keeps among the fits of its hypotheses (in order): the highest model
    likelihood, the first on ties; a fit without a likelihood counts with the one before it."""
    best, best_ll = None, None
    ll = previous_likelihood
    for res in fits:
        if res.likelihood is not None:
            ll = res.likelihood
        if best is None or best_ll < ll:
            best, best_ll = res, ll
    best.likelihood = best_ll
    return best


class FaceTracker:
    """Tracking state of one face across the frames of one video.

    Parameters
    ----------
    clnf : CLNF, optional
        Loaded model (``CLNF.load(models)`` by default).
    detect : callable, optional
        ``detect(image_bgr) -> box (4,) x, y, w, h or None``; by default OpenFace's MTCNN with
        ``DetectSingleFaceMTCNN``'s choice of face.
    validate : callable, optional
        ``validate(gray_uint8, landmarks (68, 2), orientation (3,)) -> certainty``; by default
        ``DetectionValidator.check``.
    intrinsics : (fx, fy, cx, cy), optional
        Camera intrinsics for the pose, 3D landmarks and gaze; None, or None for a pair (``fx, fy`` or ``cx, cy``):
        FeatureExtraction's guess from the first frame's size (:func:`gpuau.video.camera_intrinsics`).
    models : path-like, optional
        OpenFace model folder.
    device : str or Backend
        Where the CLNF fits run (``backend.kernels`` warp, CCNF responses, mean-shift).
    detect_every : int, optional
        Also run the detector on every ``detect_every``-th frame (frames 0, N, 2N, ... of the video):
        while tracking succeeds, the multi-hypothesis fit from its box replaces the tracked face when
        it validates; before a face is first found (or after 100 failures), the face is looked for on
        those frames too, not only every ``6 * reinit_video_every`` (12).  None (default): detect only
        to start (those 12-frame steps) and when tracking fails, as OpenFace does.
    camera_space : bool
        Compute each frame's head pose and camera-space 3D landmarks (default).  False leaves
        :attr:`LandmarkResult.pose` and ``landmarks_3d`` None for a caller that computes those of many
        trackers at once (:func:`camera_space_outputs`).
    """

    def __init__(self, clnf: "CLNF | None" = None, *, detect: "Callable | None" = None,
                 validate: "Callable | None" = None, intrinsics=None, models=None, device: "str | Backend" = "cpu",
                 detect_every: "int | None" = None, camera_space: bool = True):
        self.clnf = clnf or CLNF.load(models)
        self.detect_every = detect_every
        self.camera_space = camera_space
        self.frame_index = 0
        self.backend = resolve_device(device)
        self._models = models
        self._detect = detect
        self._validate = validate
        self._camera = intrinsics
        self.intrinsics = None  # (fx, fy, cx, cy), completed from the first frame's size (_result)
        self.part_landmarks, self.part_params = initial_parts(self.clnf)
        self.reset()

    # -- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the face (``CLNF::Reset``)."""
        pdm = self.clnf.model.pdm
        self.tracking_initialised = False
        self.detection_success = False
        self.detection_certainty = 0.0
        self.likelihood = -10.0
        self.failures_in_a_row = -1
        self.params_global = np.array([1, 0, 0, 0, 0, 0], _F)
        self.params_local = np.zeros(pdm.n_modes, _F)
        self.landmarks = np.zeros((pdm.n_points, 2), _F)
        self.window_sizes = tuple(self.clnf.parameters.window_sizes_init)

    def _detector(self) -> Callable:
        if self._detect is None:
            from gpuau.detect import MTCNN

            self._detect = MTCNN(self._models, device=self.backend).detect_box
        return self._detect

    def _validator(self) -> Callable:
        if self._validate is None:
            from gpuau.landmarks.validator import DetectionValidator

            self._validate = DetectionValidator.load(self._models, device=self.backend).check
        return self._validate

    # -- one model fit + validation (CLNF::DetectLandmarks) -------------------------------------
    def _outcome(self, gray8: np.ndarray, res: FitResult) -> "tuple[bool, float]":
        from gpuau.landmarks.validator import detection_outcome

        p = self.clnf.parameters
        certainty = None
        if p.validate_detections and res.success:
            certainty = float(self._validator()(gray8, res.landmarks, res.params_global[1:4]))
        return detection_outcome(res.success, certainty, validate=p.validate_detections, boundary=p.validation_boundary)

    def _adopt(self, res: FitResult, success: bool, certainty: float) -> None:
        self.params_global, self.params_local, self.landmarks = res.params_global, res.params_local, res.landmarks
        if res.likelihood is not None:
            self.likelihood = res.likelihood
        self.part_landmarks = res.part_landmarks or self.part_landmarks
        self.part_params = res.part_params or self.part_params
        self.detection_success, self.detection_certainty = success, certainty

    def _detect_in_image(self, gray8: np.ndarray, images, box: np.ndarray, best: "FitResult | None") -> bool:
        """Multi-hypothesis initialisation from a face box (``best``, when given, is its result),
        validated, adopted as the state."""
        if best is None:
            best = fit_from_box(self.clnf, gray8, box, previous_likelihood=self.likelihood, backend=self.backend,
                                images=images)
        success, certainty = self._outcome(gray8, best)
        self._adopt(best, success, certainty)
        return success

    # -- one frame (DetectLandmarksInVideo) -----------------------------------------------------
    def tracking_request(self) -> "tuple[np.ndarray, np.ndarray, tuple] | None":
        """``(params_global, params_local, window_sizes)`` of the tracking fit :meth:`track` starts the
        next frame with, or None while no face is tracked.

        A caller fitting the faces of many trackers in one
        :func:`~gpuau.landmarks.clnf.detect_landmarks_batch` passes each face's result to :meth:`track`
        as ``fit``.
        """
        if not self.tracking_initialised:
            return None
        p = self.clnf.parameters
        return self.params_global, self.params_local, p.window_sizes_small if self.detection_success else p.window_sizes_init

    def track(self, image_bgr: np.ndarray, gray8: "np.ndarray | None" = None, *,
              fit: "FitResult | None" = None, box_fit: "FitResult | None" = None) -> LandmarkResult:
        """Track (and when needed re-detect) the face in the next frame.

        Parameters
        ----------
        image_bgr : ndarray (H, W, 3) uint8
        gray8 : ndarray (H, W) uint8, optional
            The frame's grey levels (``cv2.COLOR_BGR2GRAY`` by default).
        fit : FitResult, optional
            This frame's tracking fit, already computed from :meth:`tracking_request` (by a caller
            batching many trackers); by default :meth:`track` computes it.
        box_fit : FitResult, optional
            :func:`fit_from_box`'s result for the box this frame's detector returns, computed by such a
            caller, used if this frame detects: with ``previous_likelihood`` the likelihood the tracker
            has when it detects (``self.likelihood``, or the tracking fit's ``likelihood`` when that
            fit has one).

        Returns
        -------
        LandmarkResult
        """
        if gray8 is None:
            from gpuau.video import to_gray8

            gray8 = to_gray8(image_bgr)
        p = self.clnf.parameters
        ok = self._step(image_bgr, gray8, p, fit, box_fit)
        self.frame_index += 1
        return self._result(ok, gray8.shape)

    def detects_before_fit(self) -> bool:
        """Whether :meth:`track` runs the face detector before any fit on the next frame: while no face
        is tracked, on the first frame and then every ``6 * reinit_video_every`` frames
        (``DetectLandmarksInVideo``), and on the frames ``detect_every`` schedules.  Engines batching many trackers
        ask it ahead."""
        every = self.clnf.parameters.reinit_video_every
        return not self.tracking_initialised and ((self.failures_in_a_row + 1) % (every * 6) == 0 or self._scheduled())

    def _scheduled(self) -> bool:
        """Whether ``detect_every`` schedules a detection on the next frame."""
        return self.detect_every is not None and self.frame_index % self.detect_every == 0

    def detects_after_fit(self, success: bool) -> bool:
        """Whether :meth:`track` runs the face detector after the next frame's tracking fit, whose
        validated outcome is ``success`` (for a tracker with ``tracking_initialised``): a failed fit
        when its failure count since the last success is a multiple of ``reinit_video_every``
        (``DetectLandmarksInVideo``), a successful one when ``detect_every`` schedules the frame."""
        if not success:
            every = self.clnf.parameters.reinit_video_every
            return every > 0 and (self.failures_in_a_row + 1) % every == 0
        return self._scheduled()

    def _step(self, image_bgr, gray8, p, fit, box_fit) -> bool:
        initial_detection = not self.tracking_initialised
        images = None
        detect = self.detects_before_fit()
        scheduled = False
        if self.tracking_initialised:
            self.window_sizes = self.tracking_request()[2]
            if fit is None:
                images = frame_images(gray8, self.backend)
                fit = detect_landmarks_batch(self.clnf, images, [0], self.params_global, self.params_local,
                                             self.window_sizes, backend=self.backend)[0]
            res = fit
            success, certainty = self._outcome(gray8, res)
            detect = self.detects_after_fit(success)
            scheduled = detect and success  # detect_every's detection although tracking succeeded
            self._adopt(res, success, certainty)
            self.failures_in_a_row = -1 if success else self.failures_in_a_row + 1
        if detect:
            box = self._detector()(image_bgr)
            if box is not None:
                self.tracking_initialised = True
                saved = (self.params_global, self.params_local, self.likelihood, self.landmarks)
                tracked = (self.part_landmarks, self.part_params, self.detection_success, self.detection_certainty,
                           self.window_sizes)
                self.window_sizes = p.window_sizes_init
                success = self._detect_in_image(gray8, images, np.asarray(box, _F),
                                                box_fit)
                if not initial_detection and not success:
                    self.params_global, self.params_local, self.likelihood, self.landmarks = saved
                    if scheduled:  # keep the successful tracking fit whole
                        (self.part_landmarks, self.part_params, self.detection_success, self.detection_certainty,
                         self.window_sizes) = tracked
                    return scheduled
                self.failures_in_a_row = -1
                return True
        if not self.tracking_initialised:
            self.failures_in_a_row += 1
        if self.failures_in_a_row > 100:
            self.tracking_initialised = False
        return self.detection_success

    def _result(self, ok: bool, shape) -> LandmarkResult:
        if self.intrinsics is None:
            from gpuau.video import camera_intrinsics

            self.intrinsics = camera_intrinsics(shape[1], shape[0], self._camera)
        result = LandmarkResult(
            success=bool(ok),
            detection_success=bool(self.detection_success),
            confidence=float(self.detection_certainty),
            landmarks=self.landmarks.copy(),
            params_global=self.params_global.copy(),
            params_local=self.params_local.copy(),
            landmarks_3d=None,
            pose=None,
            part_landmarks={k: v.copy() for k, v in self.part_landmarks.items()},
            part_params={k: (g.copy(), p.copy()) for k, (g, p) in self.part_params.items()},
            likelihood=float(self.likelihood),
        )
        if self.camera_space:
            camera_space_outputs(self.clnf, [result], [self.intrinsics])
        return result
