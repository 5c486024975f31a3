"""Per-person AU analysis of a video: OpenFace's ``FaceAnalyser`` as used by FeatureExtraction.

Per-frame compute (alignment -> FHOG -> geometry -> projections) is a chain of pure functions over
arrays (:func:`face_features`), so an engine can batch it over frames and faces.  What must run in
frame order (running medians, the history for the offline pass) lives in :class:`AUAnalyzer`.

To keep memory bounded on long videos no per-frame descriptor is stored: the offline pass needs,
per frame, only the raw predictions and, for the first ``MAX_INIT_FRAMES`` tracked frames, the
projections ``[hog, geometry] @ W`` (one float per model).

Port of ``FaceAnalyser::AddNextFrame``, ``PostprocessPredictions``, ``PostprocessOutputFile`` and
``PredictStaticAUsAndComputeFeatures`` (FaceAnalyser.cpp).
"""
from __future__ import annotations

import os

import numpy as np

from gpuau.au.postprocess import postprocess_intensities, postprocess_presence
from gpuau.au.predictors import StackedAUModels, decision_values, presence, project
from gpuau.au.running_median import GEOM_BINS, GEOM_MAX, GEOM_MIN, HOG_BINS, HOG_MAX, HOG_MIN, RunningMedian
from gpuau.device import resolve_device
from gpuau.features.align import AU_SCALE, AU_SIZE, align_faces_mask
from gpuau.features.fhog import fhog_descriptors
from gpuau.features.geometry import geometry_descriptor
from gpuau.landmarks.pdm import AU_PDM, PDM
from gpuau.models.au_file import load_au_models
from gpuau.models.tris_file import load_tris

MAX_INIT_FRAMES = 3000
"""``FaceAnalyser::max_init_frames``: tracked frames re-predicted with the final median."""

HOG_SIZE = 4464
"""12 x 12 cells x 31 FHOG channels of a 112 x 112 face."""


def align_faces(images, landmarks_2d: np.ndarray, pdm: PDM, triangulation: np.ndarray,
                image_index: "np.ndarray | None" = None) -> "tuple[np.ndarray, np.ndarray]":
    """Aligned masked faces and the local PDM parameters OpenFace refits to the landmarks.

    OpenFace does not reuse the tracker's parameters here: ``FaceAnalyser`` fits the AU PDM to the
    detected landmarks again (``PDM::CalcParams``) and uses that fit's translation and local
    parameters.

    Parameters
    ----------
    images : (B, H, W, 3) uint8 BGR, or a sequence of such frames
    landmarks_2d : (N, 68, 2) float
    pdm : PDM
        The AU PDM.
    triangulation : (T, 3) int
    image_index : (N,) int, optional
        Frame of each face (default: face ``i`` is on frame ``i``).

    Returns
    -------
    aligned : (N, 112, 112, 3) uint8
    params_local : (N, 34) float32
    """
    n = len(landmarks_2d)
    landmarks_2d = np.asarray(landmarks_2d, np.float32).reshape(n, -1, 2)
    params_global = np.zeros((n, 6), np.float32)
    params_local = np.zeros((n, pdm.n_modes), np.float32)
    for i in range(n):
        params_global[i], params_local[i] = pdm.calc_params(landmarks_2d[i])
    index = np.arange(n) if image_index is None else np.asarray(image_index)
    if n == 0:
        return np.zeros((0, AU_SIZE, AU_SIZE, 3), np.uint8), params_local
    frames = images if isinstance(images, np.ndarray) else np.stack(images)
    aligned = align_faces_mask(frames, index, landmarks_2d, params_global, pdm.mean_shape, triangulation, AU_SCALE, AU_SIZE)
    return aligned, params_local


def face_features(images, landmarks_2d: np.ndarray, pdm: PDM, triangulation: np.ndarray, device="cpu",
                  image_index: "np.ndarray | None" = None) -> "tuple[np.ndarray, np.ndarray]":
    """FHOG and geometry descriptors of a batch of tracked faces.

    Parameters
    ----------
    images : (B, H, W, 3) uint8 BGR, or a sequence of such frames
    landmarks_2d : (N, 68, 2) float
    pdm : PDM
    triangulation : (T, 3) int
    device : str or Backend
        Where FHOG runs.
    image_index : (N,) int, optional
        Frame of each face (default: face ``i`` is on frame ``i``).

    Returns
    -------
    hog : (N, 4464) float32
    geometry : (N, 238) float64
    """
    aligned, params_local = align_faces(images, landmarks_2d, pdm, triangulation, image_index)
    hog = resolve_device(device).asnumpy(fhog_descriptors(aligned, device))
    return hog, geometry_descriptor(pdm.princ_comp, params_local)


class AUAnalyzer:
    """AU intensities and presence of one person over a video, as FeatureExtraction computes them.

    Parameters
    ----------
    models : str or PathLike, optional
        OpenFace model folder (see :func:`gpuau.models.store.resolve_models_dir`).
    dynamic : bool
        FeatureExtraction's person-calibrated models (``AU_all_best.txt``) and offline correction;
        ``False`` for the static models (``-au_static``).
    device : str or Backend
        Where FHOG runs.

    Notes
    -----
    State: the FHOG and geometry running medians, the frame counters, the raw per-frame predictions
    and the projections of the first ``MAX_INIT_FRAMES`` tracked frames.
    """

    def __init__(self, models: "str | os.PathLike | None" = None, dynamic: bool = True, *, device="cpu"):
        self.pdm = PDM.load(AU_PDM, models)
        self.triangulation = load_tris(models)
        self.models = StackedAUModels.from_models(load_au_models(models, dynamic=dynamic))
        self.dynamic = dynamic
        self.device = device
        self.hog_median = RunningMedian(HOG_BINS, HOG_MIN, HOG_MAX)
        self.geometry_median = RunningMedian(GEOM_BINS, GEOM_MIN, GEOM_MAX)
        self.frames = 0
        self.frames_success = 0
        self._success: list = []
        self._timestamps: list = []
        self._raw: list = []  # per frame: (K,) intensities then presence values, 0 on failed frames
        self._init_frames: list = []
        self._init_projections: list = []
        # (column name, index into a row of raw values) in model order and in OpenFace's (sorted) order
        nr = self.models.num_reg
        reg = [(f"{n}_r", k) for k, n in enumerate(self.reg_names)]
        cls = [(f"{n}_c", nr + k) for k, n in enumerate(self.cls_names)]
        self._model_columns = reg + cls
        self._sorted_columns = sorted(reg) + sorted(cls)

    @property
    def reg_names(self) -> list:
        return self.models.reg_names

    @property
    def cls_names(self) -> list:
        return self.models.cls_names

    def add_frame(self, image_bgr: np.ndarray, landmarks_2d: np.ndarray, success: bool, timestamp: float = 0.0) -> dict:
        """Analyse the next frame.

        Parameters
        ----------
        image_bgr : (H, W, 3) uint8
        landmarks_2d : (68, 2) float
            The tracker's landmarks (ignored when ``success`` is False).
        success : bool
            Whether tracking succeeded on this frame.
        timestamp : float
            Seconds.

        Returns
        -------
        dict
            Online (not yet post-processed) ``AUxx_r`` / ``AUxx_c`` values of this frame.
        """
        if success:
            hog, geometry = face_features(np.asarray(image_bgr)[None], np.asarray(landmarks_2d, np.float32)[None],
                                          self.pdm, self.triangulation, self.device)
            hog, geometry = hog[0], geometry[0]
        else:
            # FHOG of the all-black aligned face is exactly 0, geometry is zeroed
            hog = np.zeros(HOG_SIZE, np.float32)
            geometry = np.zeros(self.models.weights.shape[0] - HOG_SIZE)
        return self.add_features(hog, geometry, success, timestamp)

    def add_frames(self, images, landmarks_2d: np.ndarray, success, timestamps=None) -> list:
        """:meth:`add_frame` for consecutive frames, with the per-face compute batched.

        Parameters
        ----------
        images : (N, H, W, 3) uint8 or sequence of N frames
        landmarks_2d : (N, 68, 2) float
        success : (N,) bool
        timestamps : (N,) float, optional

        Returns
        -------
        list of dict
            Online values of each frame, as :meth:`add_frame`.
        """
        success = np.asarray(success, bool).reshape(-1)
        n = success.shape[0]
        timestamps = np.zeros(n) if timestamps is None else np.asarray(timestamps, np.float64)
        tracked = np.flatnonzero(success)
        hog = np.zeros((n, HOG_SIZE), np.float32)
        geometry = np.zeros((n, self.models.weights.shape[0] - HOG_SIZE))
        if tracked.size:
            frames = images if isinstance(images, np.ndarray) else np.stack(images)
            hog[tracked], geometry[tracked] = face_features(frames, np.asarray(landmarks_2d, np.float32)[tracked], self.pdm,
                                                            self.triangulation, self.device, image_index=tracked)
        return [self.add_features(hog[i], geometry[i], success[i], timestamps[i]) for i in range(n)]

    def add_features(self, hog: np.ndarray, geometry: np.ndarray, success: bool, timestamp: float = 0.0) -> dict:
        """Sequential part of :meth:`add_frame` on precomputed descriptors (for batched engines).

        Parameters
        ----------
        hog : (4464,) float
        geometry : (238,) float64
        success : bool
        timestamp : float

        Returns
        -------
        dict
            As :meth:`add_frame`.
        """
        success = bool(success)
        hog = np.asarray(hog, np.float64)
        geometry = np.asarray(geometry, np.float64)
        self.frames += 1
        if success:
            self.frames_success += 1
        if self.frames % 2 == 1:  # OpenFace updates the medians on every other frame
            median = self.hog_median.update(hog, success)
            self.hog_median.median = np.maximum(median, 0.0)
            self.geometry_median.update(geometry, success)
        proj = project(self.models.weights, hog[None], geometry[None])[0]
        decisions = decision_values(self.models, proj, self._median_projection())
        nr = self.models.num_reg
        raw = np.concatenate([decisions[:nr], presence(self.models, decisions)])
        if not success:
            raw[:] = 0.0
        elif self.frames_success - 1 < MAX_INIT_FRAMES:
            self._init_frames.append(self.frames - 1)
            self._init_projections.append(proj)
        self._success.append(success)
        self._timestamps.append(float(timestamp))
        self._raw.append(raw)
        return self._as_columns(raw[None], sort=False, index=0)

    def _median_projection(self) -> np.ndarray:
        return project(self.models.weights, self.hog_median.median[None], self.geometry_median.median[None])[0]

    def _as_columns(self, values: np.ndarray, sort: bool = True, index=None) -> dict:
        order = self._sorted_columns if sort else self._model_columns
        if index is None:
            return {name: values[:, k] for name, k in order}
        return dict(zip([name for name, _ in order], values[index, [k for _, k in order]].tolist()))

    @property
    def success(self) -> np.ndarray:
        """(N,) bool: tracking success of each frame added so far."""
        return np.array(self._success, bool)

    @property
    def timestamps(self) -> np.ndarray:
        """(N,) float64: timestamps of the frames added so far."""
        return np.array(self._timestamps, np.float64)

    def finish(self) -> dict:
        """Final per-frame AU values after FeatureExtraction's offline post-processing.

        The first ``MAX_INIT_FRAMES`` tracked frames are re-predicted with the final medians, then
        intensities are person-calibrated, clipped and smoothed and presence is majority-smoothed.

        Returns
        -------
        dict[str, ndarray (N,) float64]
            ``AUxx_r`` columns (sorted by name) then ``AUxx_c`` columns (sorted), OpenFace's
            column order.
        """
        nr = self.models.num_reg
        raw = np.array(self._raw, np.float64).reshape(len(self._raw), -1)
        success = self.success
        if self.dynamic and self._init_frames:
            decisions = decision_values(self.models, np.array(self._init_projections), self._median_projection())
            raw[self._init_frames, :nr] = decisions[:, :nr]
            raw[self._init_frames, nr:] = presence(self.models, decisions)
        values = np.empty_like(raw)
        values[:, :nr] = postprocess_intensities(raw[:, :nr], success, self.models.cutoff, self.dynamic)
        values[:, nr:] = postprocess_presence(raw[:, nr:])
        return self._as_columns(values)


def predict_static_aus(image_bgr: np.ndarray, landmarks_2d: np.ndarray, models: "StackedAUModels | None" = None,
                       pdm: "PDM | None" = None, triangulation: "np.ndarray | None" = None, device="cpu") -> dict:
    """AUs of a single image with OpenFace's static models (FaceLandmarkImg).

    Port of ``FaceAnalyser::PredictStaticAUsAndComputeFeatures``, FaceAnalyser.cpp.

    Parameters
    ----------
    image_bgr : (H, W, 3) uint8
    landmarks_2d : (68, 2) float
    models : StackedAUModels, optional
        Defaults to ``AU_all_static.txt``'s models.
    pdm : PDM, optional
    triangulation : (T, 3) int, optional
    device : str or Backend

    Returns
    -------
    dict[str, float]
        ``AUxx_r`` (clipped to [0, 5]) then ``AUxx_c``, each sorted by name.
    """
    models = models or StackedAUModels.from_models(load_au_models(dynamic=False))
    pdm = pdm or PDM.load(AU_PDM)
    triangulation = load_tris() if triangulation is None else triangulation
    hog, geometry = face_features([image_bgr], np.asarray(landmarks_2d, np.float32)[None], pdm, triangulation, device)
    decisions = decision_values(models, project(models.weights, hog, geometry)[0], np.zeros(models.weights.shape[1]))
    nr = models.num_reg
    out = {}
    for k in sorted(range(nr), key=lambda k: models.reg_names[k]):
        out[f"{models.reg_names[k]}_r"] = float(np.clip(decisions[k], 0.0, 5.0))
    cls = presence(models, decisions)
    for k in sorted(range(len(models.cls_names)), key=lambda k: models.cls_names[k]):
        out[f"{models.cls_names[k]}_c"] = float(cls[k])
    return out
