"""Per-person AU analysis of a video: OpenFace's ``FaceAnalyser`` as used by FeatureExtraction.

Per-frame compute (alignment -> FHOG -> geometry -> projections) is a chain of pure functions over
arrays (:func:`face_features`), so an engine can batch it over frames and faces.  What must run in
frame order (running medians, the history for the offline pass) lives in :class:`AUAnalyzer`, one
per stream, on the backend's device; :func:`add_features_batch` advances many streams by one frame
in one batch (on the GPU only what the caller asks for comes back to the host).

To keep memory bounded on long videos no per-frame descriptor is stored: the offline pass needs,
per frame, only the raw predictions and, for the first ``MAX_INIT_FRAMES`` tracked frames, the
projections ``[hog, geometry] @ W`` (one float per model).

Port of ``FaceAnalyser::AddNextFrame``, ``PostprocessPredictions``, ``PostprocessOutputFile`` and
``PredictStaticAUsAndComputeFeatures`` (FaceAnalyser.cpp).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from gpuau.au.postprocess import postprocess_intensities, postprocess_presence
from gpuau.au.predictors import StackedAUModels, decision_values, presence, project
from gpuau.au.running_median import (GEOM_BINS, GEOM_MAX, GEOM_MIN, HOG_BINS, HOG_MAX, HOG_MIN, RunningMedian,
                                     state_bytes, update_running_medians)
from gpuau.device import resolve_device
from gpuau.features.align import AU_SCALE, AU_SIZE, align_faces_mask, align_output_faces
from gpuau.features.fhog import fhog_descriptors
from gpuau.features.geometry import GEOMETRY_SIZE, geometry_descriptor
from gpuau.kernels.loader import device_context
from gpuau.landmarks.pdm import AU_PDM, PDM
from gpuau.models.au_file import load_au_models
from gpuau.models.store import resolve_models_dir
from gpuau.models.tris_file import load_tris

if TYPE_CHECKING:
    from gpuau.io import AlignedFaces

MAX_INIT_FRAMES = 3000
"""``FaceAnalyser::max_init_frames``: tracked frames re-predicted with the final median."""

HOG_SIZE = 4464
"""12 x 12 cells x 31 FHOG channels of a 112 x 112 face."""

STATE_BYTES = state_bytes(HOG_SIZE, HOG_BINS) + state_bytes(GEOMETRY_SIZE, GEOM_BINS)
"""Device memory of one :class:`AUAnalyzer`'s running medians (27.4 MB).  Beside them on the device: the projections of
the first ``MAX_INIT_FRAMES`` tracked frames (8 bytes per model and frame: 0.84 MB) and the newest block of the raw
predictions' history (4096 frames: 1.1 MB); the history's filled blocks go to the host (8 bytes per model and frame,
0.28 KB)."""


class AlignedBatch(NamedTuple):
    """A batch's aligned faces and the AU PDM refit they come from (:func:`align_faces`)."""

    faces: object
    """(N, 112, 112, 3) uint8, on the device: masked, at the AU scale."""
    params_local: np.ndarray
    """(N, 34) float32, on the host."""
    params_global: np.ndarray
    """(N, 6) float32, on the host: its translation places the faces."""
    frames: object
    """The frames, as one array (on the device if they were given there)."""
    index: np.ndarray
    """(N,) frame of each face."""
    landmarks: np.ndarray
    """(N, 68, 2) float32."""


def align_faces(images, landmarks_2d: np.ndarray, pdm: PDM, triangulation: np.ndarray,
                image_index: "np.ndarray | None" = None, *, device="cpu") -> AlignedBatch:
    """Aligned masked faces and the PDM parameters OpenFace refits to the landmarks.

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
    device : str or Backend
        Where the faces are warped and masked.

    Returns
    -------
    AlignedBatch
    """
    backend = resolve_device(device)
    n = len(landmarks_2d)
    landmarks_2d = np.asarray(landmarks_2d, np.float32).reshape(n, -1, 2)
    params_global, params_local = map(backend.asnumpy, pdm.calc_params_batch(landmarks_2d, backend=backend))
    index = np.arange(n) if image_index is None else np.asarray(image_index)
    if n == 0:
        return AlignedBatch(backend.xp.zeros((0, AU_SIZE, AU_SIZE, 3), np.uint8), params_local, params_global, images,
                            index, landmarks_2d)
    frames = images if isinstance(images, (np.ndarray, backend.xp.ndarray)) else np.stack(images)
    faces = align_faces_mask(frames, index, landmarks_2d, params_global, pdm.mean_shape, triangulation, AU_SCALE,
                             AU_SIZE, device=backend)
    return AlignedBatch(faces, params_local, params_global, frames, index, landmarks_2d)


def face_features(images, landmarks_2d: np.ndarray, pdm: PDM, triangulation: np.ndarray, device="cpu",
                  image_index: "np.ndarray | None" = None, *, aligned: "AlignedFaces | None" = None):
    """FHOG and geometry descriptors of a batch of tracked faces (and their aligned faces), on the device.

    Parameters
    ----------
    images : (B, H, W, 3) uint8 BGR, or a sequence of such frames
    landmarks_2d : (N, 68, 2) float
    pdm : PDM
    triangulation : (T, 3) int
    device : str or Backend
        Where alignment and FHOG run and the descriptors stay.
    image_index : (N,) int, optional
        Frame of each face (default: face ``i`` is on frame ``i``).
    aligned : AlignedFaces, optional
        Also return the aligned faces FeatureExtraction writes with these options (the faces the FHOG is computed on
        with the default ones).

    Returns
    -------
    hog : (N, 4464) float32
    geometry : (N, 238) float64
    faces : (N, size, size, 3) uint8, only with ``aligned``
        On the device's array module (NumPy, or CuPy on ``cuda``).
    """
    backend = resolve_device(device)
    a = align_faces(images, landmarks_2d, pdm, triangulation, image_index, device=backend)
    hog = fhog_descriptors(a.faces, backend)
    geometry = backend.asarray(geometry_descriptor(pdm.princ_comp, a.params_local))
    if aligned is None:
        return hog, geometry
    if not len(a.faces):
        return hog, geometry, backend.xp.zeros((0, aligned.size, aligned.size, 3), np.uint8)
    return hog, geometry, align_output_faces(a.faces, a.frames, a.index, a.landmarks, a.params_global, pdm.mean_shape,
                                             triangulation, aligned, device=backend)


def untracked_features(xp, n: int, geometry_size: int, aligned: "AlignedFaces | None" = None) -> tuple:
    """What :func:`face_features` gives a frame without a tracked face, for ``n`` frames: zero FHOG (that of the
    all-black aligned face OpenFace makes) and zero geometry, and with ``aligned`` the black faces."""
    out = (xp.zeros((n, HOG_SIZE), np.float32), xp.zeros((n, geometry_size)))
    return out if aligned is None else out + (xp.zeros((n, aligned.size, aligned.size, 3), np.uint8),)


@lru_cache(maxsize=None)
def _stacked_models(models_dir: Path, dynamic: bool, backend) -> StackedAUModels:
    """AU models of a model folder on ``backend``, loaded once per process and shared by every analyzer."""
    if backend.name != "cpu":
        return _stacked_models(models_dir, dynamic, resolve_device("cpu")).to_backend(backend)
    return StackedAUModels.from_models(load_au_models(models_dir, dynamic=dynamic))


class _History:
    """Rows appended one per frame into a block on the device, moved to the host whenever it fills: the device holds
    one block of a stream however long its video (a buffer doubling on the device needed 0.9 GB per stream for a
    moment past 2^20 frames, 9.7 hours at 30 frames/s, and one stream's failed allocation fails every stream of the
    step); the host holds the video's rows, as OpenFace does."""

    BLOCK = 4096

    def __init__(self, backend, width: int):
        self._backend = backend
        self._width = width
        self._done: list = []  # the filled blocks, on the host
        self._block = self._new_block()
        self._used = 0

    def _new_block(self):
        with device_context(self._backend):  # cuda:N: on GPU N, whichever device the appending thread has current
            return self._backend.xp.zeros((self.BLOCK, self._width))

    def append(self, row) -> None:
        if self._used == self.BLOCK:
            self._done.append(self._backend.asnumpy(self._block))
            self._block = self._new_block()  # (on the CPU the block just kept)
            self._used = 0
        self._block[self._used] = row
        self._used += 1

    @property
    def rows(self) -> np.ndarray:
        """(n, width) float64 on the host: the rows appended so far."""
        return np.concatenate(self._done + [self._backend.asnumpy(self._block[:self._used])])


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
        Where alignment, FHOG, the running medians and the predictions run.

    Notes
    -----
    State, on the device: the FHOG and geometry running-median histograms and medians, the
    projection of the medians, the projections of the first ``MAX_INIT_FRAMES`` tracked frames and the
    newest 4096 frames' raw predictions; on the host: the earlier raw predictions, frame counters, success flags,
    timestamps.
    The models are shared by the analyzers of one process.  :func:`add_features_batch` advances
    many analyzers (streams) by one frame each in one batch.
    """

    def __init__(self, models: "str | os.PathLike | None" = None, dynamic: bool = True, *, device="cpu"):
        self.backend = resolve_device(device)
        self.pdm = PDM.load(AU_PDM, models)
        self.triangulation = load_tris(models)
        models_dir = resolve_models_dir(models)
        self.models = _stacked_models(models_dir, dynamic, resolve_device("cpu"))
        self.device_models = _stacked_models(models_dir, dynamic, self.backend)
        self.dynamic = dynamic
        xp = self.backend.xp
        self.hog_median = RunningMedian(HOG_BINS, HOG_MIN, HOG_MAX, nonnegative=True)
        self.geometry_median = RunningMedian(GEOM_BINS, GEOM_MIN, GEOM_MAX)
        self.median_projection = None  # (K,) [hog_median, geometry_median] @ W, on the device
        self.frames = 0
        self.frames_success = 0
        self._success: list = []
        self._timestamps: list = []
        k = self.models.weights.shape[1]
        self._raw = _History(self.backend, k)  # per frame: (K,) intensities then presence, 0 on failed frames
        with device_context(self.backend):  # cuda:N, whatever GPU the constructing thread has current
            self._init_projections = xp.zeros((MAX_INIT_FRAMES, k))  # of the first tracked frames, re-predicted
        self._init_frames: list = []
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

    def add_frame(self, image_bgr: np.ndarray, landmarks_2d: np.ndarray, success: bool, timestamp: float = 0.0, *,
                  online: bool = True) -> "dict | None":
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
        online : bool
            Return this frame's online values; False returns None and reads nothing back from the device (on a
            GPU the read-back waits for every launch queued before it, the landmark fits' too).

        Returns
        -------
        dict or None
            Online (not yet post-processed) ``AUxx_r`` / ``AUxx_c`` values of this frame.
        """
        values = self.add_frames(np.asarray(image_bgr)[None], np.asarray(landmarks_2d, np.float32)[None], [success],
                                 [timestamp], online=online)
        return values[0] if online else None

    def add_frames(self, images, landmarks_2d: np.ndarray, success, timestamps=None, *, online: bool = True,
                   recorder=None, recorded=None) -> list:
        """:meth:`add_frame` for consecutive frames, with the per-face compute batched.

        Parameters
        ----------
        images : (N, H, W, 3) uint8 or sequence of N frames
        landmarks_2d : (N, 68, 2) float
        success : (N,) bool
        timestamps : (N,) float, optional
        online : bool
            As :meth:`add_frame`.
        recorder : gpuau.io.FaceRecorder, optional
            Given the frames' FHOG descriptors and aligned faces (its :attr:`~gpuau.io.FaceRecorder.aligned`), on
            the host.
        recorded : (N,) bool, optional
            The success the recorder marks each frame with (the ``.hog`` flag, ``--aligned-tracked-only``):
            FeatureExtraction gives it ``DetectLandmarksInVideo``'s return value, the CSV's ``success``, which a first
            detection sets whatever the validator says, while the features follow the model's (``success``);
            default: ``success``.

        Returns
        -------
        list of dict (of None without ``online``)
            Online values of each frame, as :meth:`add_frame`.
        """
        success = np.asarray(success, bool).reshape(-1)
        n = success.shape[0]
        timestamps = np.zeros(n) if timestamps is None else np.asarray(timestamps, np.float64).reshape(-1)
        hog, geometry, *faces = self.features(images, landmarks_2d, success,
                                              aligned=None if recorder is None else recorder.aligned)
        if recorder is not None:
            recorder.add(self.backend.asnumpy(hog), self.backend.asnumpy(faces[0]) if faces else None,
                         success if recorded is None else recorded)
        return [self.add_features(hog[i], geometry[i], success[i], timestamps[i], online=online) for i in range(n)]

    def features(self, images, landmarks_2d: np.ndarray, success, *, aligned: "AlignedFaces | None" = None) -> tuple:
        """:func:`face_features` of the tracked faces among N frames, zero descriptors elsewhere.

        A failed frame's aligned face is all black, as OpenFace makes it; its FHOG is exactly 0, and its geometry
        is zeroed.

        Parameters
        ----------
        images : (N, H, W, 3) uint8 or sequence of N frames
        landmarks_2d : (N, 68, 2) float
        success : (N,) bool
        aligned : AlignedFaces, optional
            Also return the aligned faces (as :func:`face_features`).

        Returns
        -------
        hog : (N, 4464) float32
        geometry : (N, 238) float64
        faces : (N, size, size, 3) uint8, only with ``aligned``
            On the device.
        """
        xp = self.backend.xp
        success = np.asarray(success, bool).reshape(-1)
        tracked = np.flatnonzero(success)
        if tracked.size == success.size:
            return face_features(images, landmarks_2d, self.pdm, self.triangulation, self.backend, aligned=aligned)
        out = untracked_features(xp, success.size, self.models.weights.shape[0] - HOG_SIZE, aligned)
        if tracked.size:
            index = xp.asarray(tracked)
            found = face_features(images, np.asarray(landmarks_2d, np.float32)[tracked], self.pdm, self.triangulation,
                                  self.backend, image_index=tracked, aligned=aligned)
            for whole, part in zip(out, found):
                whole[index] = part
        return out

    def add_features(self, hog, geometry, success: bool, timestamp: float = 0.0, *, online: bool = True) -> "dict | None":
        """Sequential part of :meth:`add_frame` on precomputed descriptors.

        Parameters
        ----------
        hog : (4464,) float
        geometry : (238,) float64
        success : bool
        timestamp : float
        online : bool
            As :meth:`add_frame`.

        Returns
        -------
        dict or None
            As :meth:`add_frame`.
        """
        raw = add_features_batch([self], hog[None], geometry[None], [success], [timestamp])
        return self._as_columns(self.backend.asnumpy(raw), sort=False, index=0) if online else None

    def _record(self, raw, projection, success: bool, timestamp: float) -> None:
        """Append one frame's raw predictions (and its projection while initialising) to the history."""
        if success and self.frames_success - 1 < MAX_INIT_FRAMES:
            self._init_projections[len(self._init_frames)] = projection
            self._init_frames.append(self.frames - 1)
        self._success.append(success)
        self._timestamps.append(float(timestamp))
        self._raw.append(raw)

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

        The first ``MAX_INIT_FRAMES`` tracked frames are re-predicted with the final medians (on the
        device) and patched into the history, on the host (its last block comes from the device): then, one AU at
        a time, intensities are person-calibrated, clipped and smoothed and presence is majority-smoothed.

        Returns
        -------
        dict[str, ndarray (N,) float64]
            ``AUxx_r`` columns (sorted by name) then ``AUxx_c`` columns (sorted), OpenFace's
            column order.
        """
        nr = self.models.num_reg
        raw = self._raw.rows
        if self.dynamic and self._init_frames:
            projections = self._init_projections[:len(self._init_frames)]
            decisions = self.backend.asnumpy(decision_values(self.device_models, projections, self.median_projection))
            raw[self._init_frames, :nr] = decisions[:, :nr]
            raw[self._init_frames, nr:] = presence(self.models, decisions)
        success = self.success
        cutoff = self.models.cutoff
        for k in range(raw.shape[1]):  # in place, one AU at a time: the same numbers, a column's temporaries
            column = raw[:, k:k + 1]
            raw[:, k] = (postprocess_intensities(column, success, cutoff[k:k + 1], self.dynamic) if k < nr
                         else postprocess_presence(column))[:, 0]
        return self._as_columns(raw)


def add_features_batch(analyzers: "list[AUAnalyzer]", hog, geometry, success, timestamps):
    """Advance many analyzers (one per stream) by one frame each, batched on their device.

    The sequential part of FeatureExtraction's AU stage: both running medians updated on every
    other frame of each stream (one :func:`~gpuau.au.running_median.update_running_medians` per
    descriptor kind for all streams), the projections of the frames and of the updated medians (one
    matmul on the GPU), the raw predictions, and each stream's history.  On the GPU only a stream's
    filled history block comes back to the host, once every 4096 frames (1.1 MB); the caller fetches the returned
    predictions if it needs them.

    Port of the per-frame part of ``FaceAnalyser::AddNextFrame`` (FaceAnalyser.cpp).

    Parameters
    ----------
    analyzers : list of N AUAnalyzer
        Distinct streams on one backend, with the same models.
    hog : (N, 4464) float
    geometry : (N, 238) float64
        This frame's descriptors of each stream (zeros where tracking failed), on the device.
    success : (N,) bool
    timestamps : (N,) float

    Returns
    -------
    (N, K) float64, on the device
        Online raw predictions: intensities (unclipped) in model order, then presence, 0 on failed
        frames (:meth:`AUAnalyzer.add_features` turns a row into its columns).
    """
    if not analyzers:
        return np.zeros((0, 0))
    first = analyzers[0]
    backend, models = first.backend, first.device_models
    if any(a.backend is not backend or a.device_models is not models for a in analyzers):
        raise ValueError("add_features_batch: analyzers of one batch must share their backend and models")
    if len({id(a) for a in analyzers}) != len(analyzers):
        raise ValueError("add_features_batch: one frame per analyzer in a batch")
    xp = backend.xp
    success = np.asarray(success, bool).reshape(-1)
    hog, geometry = xp.asarray(hog), xp.asarray(geometry, np.float64)
    update = []
    for i, a in enumerate(analyzers):
        a.frames += 1
        a.frames_success += bool(success[i])
        if a.frames % 2 == 1:  # OpenFace updates the medians on every other frame
            update.append(i)
    if update:
        streams = [analyzers[i] for i in update]
        index = xp.asarray(np.asarray(update)) if len(update) < len(analyzers) else slice(None)
        add = success[update]
        update_running_medians([a.hog_median for a in streams], hog[index], add, backend)
        update_running_medians([a.geometry_median for a in streams], geometry[index], add, backend)
        medians = project(models.weights, xp.stack([a.hog_median.median for a in streams]),
                          xp.stack([a.geometry_median.median for a in streams]))
        for k, a in enumerate(streams):
            a.median_projection = medians[k]
    projections = project(models.weights, hog, geometry)
    decisions = decision_values(models, projections, xp.stack([a.median_projection for a in analyzers]))
    raw = xp.concatenate([decisions[:, :models.num_reg], presence(models, decisions)], axis=1)
    if not success.all():
        raw[xp.asarray(np.flatnonzero(~success))] = 0.0  # a boolean mask would make CuPy read its count back
    for i, a in enumerate(analyzers):
        a._record(raw[i], projections[i], bool(success[i]), timestamps[i])
    return raw


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
    backend = resolve_device(device)
    hog, geometry = (backend.asnumpy(a) for a in face_features([image_bgr], np.asarray(landmarks_2d, np.float32)[None],
                                                                 pdm, triangulation, backend))
    return static_au_values(models, hog, geometry)


def static_au_values(models: StackedAUModels, hog: np.ndarray, geometry: np.ndarray) -> dict:
    """The static models' AUs of one face from its descriptors (the end of :func:`predict_static_aus`).

    Parameters
    ----------
    models : StackedAUModels
    hog : (1, 4464) float ; geometry : (1, 238) float64
        On the host.

    Returns
    -------
    dict[str, float]
        As :func:`predict_static_aus`.
    """
    decisions = decision_values(models, project(models.weights, hog, geometry)[0], np.zeros(models.weights.shape[1]))
    nr = models.num_reg
    out = {}
    for k in sorted(range(nr), key=lambda k: models.reg_names[k]):
        out[f"{models.reg_names[k]}_r"] = float(np.clip(decisions[k], 0.0, 5.0))
    cls = presence(models, decisions)
    for k in sorted(range(len(models.cls_names)), key=lambda k: models.cls_names[k]):
        out[f"{models.cls_names[k]}_c"] = float(cls[k])
    return out
