"""One video, frame by frame, as OpenFace's ``FeatureExtraction`` runs it (the CPU reference path).

frames -> :class:`~gpuau.landmarks.tracker.FaceTracker` (MTCNN, CLNF, validator, pose) ->
:class:`~gpuau.au.AUAnalyzer` (alignment, FHOG, running medians, offline pass) -> OpenFace columns.

Two other OpenFace tools have their own paths: ``FaceLandmarkImg`` for a single image (every face,
static AU models, ``face, confidence`` columns; :mod:`gpuau.images`) and ``FaceLandmarkVidMulti`` for
several faces per video (``multi_face=True``: up to 4 tracked faces, a row per tracked face and frame,
static AU models without post-processing; :mod:`gpuau.landmarks.multi`).

Port of the frame loops of ``FeatureExtraction.cpp``, ``FaceLandmarkImg.cpp`` and ``FaceLandmarkVidMulti.cpp``.
"""
from __future__ import annotations

import contextlib
import functools
import numbers
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np

from gpuau import _signals
from gpuau.cpu import threads
from gpuau.device import Backend, resolve_device
from gpuau.video import IN_MEMORY, no_face_notes, queue_depth

if TYPE_CHECKING:
    from gpuau.io import AlignedFaces
    from gpuau.landmarks.quality import Quality

FORMATS = ("csv", "parquet")


@dataclass
class Result:
    """Per-frame output of one input, in OpenFace's columns.

    Attributes
    ----------
    columns : dict[str, ndarray (rows,)]
        Columns in OpenFace's order (``frame, face_id, timestamp, confidence, success``, with ``quality="exact"``
        ``gaze_*, eye_lmk_*``, then ``pose_*, x_*, y_*, X_*, Y_*, Z_*, p_*, AU*_r, AU*_c``; README, Output
        columns); a single image's table (:meth:`Analyzer.analyze_image`) starts with FaceLandmarkImg's ``face,
        confidence`` instead, one row per face.  An image folder's table ends with gpuau's ``file`` column (str:
        each row's image file name).
    source : str
        The input's path (``"<frames>"`` for :meth:`Analyzer.analyze_frames`, ``"<image>"`` for an image array).
    frames_decoded : int
    elapsed : float
        Seconds spent analysing.
    warnings : list of str
        What the command line prints as warnings, each starting with the input's name: no face in an image or in any
        frame of a video, fewer frames decoded than the container announces, how a rotated video was turned.
    postprocessed : bool
        Whether the AUs went through FeatureExtraction's offline pass (then ``AU*_c`` are written with
        2 decimals, else with 1 as FaceLandmarkImg and FaceLandmarkVidMulti write them).
    """

    columns: dict
    source: str = IN_MEMORY
    frames_decoded: int = 0
    elapsed: float = 0.0
    warnings: list = field(default_factory=list)
    postprocessed: bool = True

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    @property
    def faces_found(self) -> int:
        """Rows with ``success == 1`` (for a single image: the faces found)."""
        if "success" not in self.columns:
            return len(self)
        return int(np.sum(self.columns["success"]))

    def __repr__(self) -> str:  # the dataclass's would print every column
        return (f"Result(source={self.source!r}, rows={len(self)}, columns={len(self.columns)}, "
                f"faces_found={self.faces_found}, frames_decoded={self.frames_decoded}, "
                f"warnings={len(self.warnings)})")

    def to_pandas(self):
        """The table as a :class:`pandas.DataFrame` (needs pandas), at full precision (the CSV rounds as OpenFace
        does); the integer columns (``frame, face_id, success``, an image's ``face``) as int32, as in Parquet."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("Result.to_pandas needs pandas: pip install pandas") from e
        from gpuau.io.openface_csv import column_dtypes

        dtypes = column_dtypes(self.columns)
        return pd.DataFrame({c: v if dtypes[c] is str else np.asarray(v, dtypes[c]) for c, v in self.columns.items()})

    def to_csv(self, path: "str | os.PathLike") -> Path:
        """Write an OpenFace CSV (FeatureExtraction's formats), atomically."""
        from gpuau.io import write_openface_csv

        return write_openface_csv(path, self.columns, sequence="face" not in self.columns,
                                  postprocessed=self.postprocessed)

    def to_parquet(self, path: "str | os.PathLike") -> Path:
        """Write the same columns as Parquet (needs pyarrow), atomically."""
        from gpuau.io import write_openface_parquet

        return write_openface_parquet(path, self.columns)

    def write(self, path: "str | os.PathLike", format: "str | None" = None) -> Path:
        """:meth:`to_csv` or :meth:`to_parquet`, as ``format`` (one of :data:`FORMATS`; by default ``path``'s name:
        :func:`output_format`) says."""
        return (self.to_parquet if output_format(path, format) == "parquet" else self.to_csv)(path)


def base_columns(gaze: bool = False) -> list:
    """FeatureExtraction's non-AU columns that gpuau writes, in file order; ``gaze``: with the gaze and eye-landmark
    columns (a fit with both eye models, ``--quality exact``)."""
    from gpuau.io import openface_columns

    return openface_columns(gaze=gaze)


def image_columns(gaze: bool = False) -> list:
    """FaceLandmarkImg's non-AU columns that gpuau writes (``face, confidence``...), in file order; ``gaze`` as
    for :func:`base_columns`."""
    from gpuau.io import openface_columns

    return openface_columns(sequence=False, gaze=gaze)


def _gaze_values(r, estimated: bool) -> list:
    """The gaze columns' values of a result (none without the eye models): the gaze, zeros unless ``estimated``,
    then the eyes' landmarks, written whatever the outcome (the part models' state)."""
    if r.gaze is None:
        return []
    from gpuau.landmarks.gaze import EYE_PARTS

    eyes = np.concatenate([r.part_landmarks[name] for name in EYE_PARTS])
    return [r.gaze if estimated else np.zeros(8), eyes[:, 0], eyes[:, 1], r.eye_landmarks_3d[:, 0],
            r.eye_landmarks_3d[:, 1], r.eye_landmarks_3d[:, 2]]


def _shape_values(r) -> list:
    return [r.pose, r.landmarks[:, 0], r.landmarks[:, 1], r.landmarks_3d[:, 0], r.landmarks_3d[:, 1],
            r.landmarks_3d[:, 2], r.params_global, r.params_local]


def landmark_row(frame_number: int, timestamp: float, r, face_id: int = 0) -> np.ndarray:
    """One row of :func:`base_columns` from a :class:`~gpuau.landmarks.tracker.LandmarkResult`.  The gaze is
    written where the frame succeeded (FeatureExtraction estimates it after a successful
    ``DetectLandmarksInVideo``; FaceLandmarkVidMulti after a validated fit, which is its trackers' success)."""
    return np.concatenate([[frame_number, face_id, timestamp, r.confidence, int(r.success)],
                           *_gaze_values(r, r.success), *_shape_values(r)]).astype(np.float64)


def image_row(face: int, r) -> np.ndarray:
    """One row of :func:`image_columns` from a :class:`~gpuau.landmarks.tracker.LandmarkResult` (FaceLandmarkImg
    estimates the gaze of every face, validated or not)."""
    return np.concatenate([[face, r.confidence], *_gaze_values(r, True), *_shape_values(r)]).astype(np.float64)


def _image_names(frames) -> "list[str] | None":
    """The names for gpuau's ``file`` column when ``frames`` is an image folder's source, else None."""
    from gpuau.video import VideoSource

    return frames.file_names if isinstance(frames, VideoSource) else None


def _columns(names: list, rows: np.ndarray) -> dict:
    return {n: rows[:, j] for j, n in enumerate(names)}


class AUThread:
    """:meth:`~gpuau.au.AUAnalyzer.add_frames` of the tracked frames on a background thread, in frame order,
    a few frames at a time.

    The AU features of the frames already tracked (alignment, FHOG, geometry: Numba kernels and BLAS products
    that release the GIL) are computed while the tracker fits the next frames.  One worker takes the
    frames in the order they were submitted, so the running medians see exactly the sequence of the
    single-threaded loop and the results are identical.  The worker waits for ``batch`` frames (or the
    end) and analyses them in one call: the ~360 Python calls between the stage's kernels, which hold
    the GIL that the tracker needs between its own, are then paid once per batch instead of once per
    frame (default.wmv, ``--quality fast``, in process: 4-12% less wall time and 4-10% less CPU with 8
    frames than with 1, 2026-12-06).

    Parameters
    ----------
    aus : AUAnalyzer
        Owned by the worker until :meth:`close` returns.
    depth : int
        Frames waiting at most (bounds memory; :meth:`submit` blocks when the worker is behind).
    batch : int
        Frames analysed together at most; fewer when they would hold more than :attr:`BATCH_BYTES` of
        pixels (large frames), or when consecutive frames differ in size (an image folder).
    recorder : gpuau.io.FaceRecorder, optional
        Given each batch's FHOG descriptors and aligned faces (:meth:`~gpuau.au.AUAnalyzer.add_frames`).
    """

    _STOP = object()
    BACKLOG = 64
    """Frames waiting at most in :meth:`Analyzer.track`'s worker (fewer within :data:`~gpuau.video.source.QUEUE_BYTES`:
    45 of 640x480): the tracker runs ahead while the worker's first batch loads its kernels (~0.1-0.15 s, holding the
    GIL; the tracker's own kernels release it).  With 8 the tracker waited 60-150 ms there, once per video; the run
    took 4% less wall time at the median of 12 alternating pairs (default.wmv, ``--quality fast``, 2026-12-06)."""
    BATCH_BYTES = 16 << 20
    """Pixels one batch holds at most (its frames are stacked into one array): 8 frames of 640x480,
    2 of 1920x1080, 1 of 3840x2160."""

    def __init__(self, aus, depth: int = 8, batch: int = 8, recorder=None):
        self.aus = aus
        self.batch = batch
        self.recorder = recorder
        self._queue: "queue.Queue" = queue.Queue(maxsize=depth)
        self._error: "BaseException | None" = None
        self._cancelled = False
        self._held: list = []  # a frame taken from the queue that starts the next batch
        # set when the thread's work is over; an interrupted join() can take a running thread for ended (bpo-45274)
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._work, name="gpuau-au", daemon=True)
        self._thread.start()

    def _next_batch(self) -> "tuple[list, bool]":
        """Up to :attr:`batch` consecutive queued frames of one size (waiting for them), and whether the end came."""
        items: list = []
        while len(items) < self.batch:
            item = self._held.pop() if self._held else self._queue.get()
            if item is self._STOP:
                return items, True
            if items and (item[0].shape != items[0][0].shape
                          or (len(items) + 1) * item[0].nbytes > self.BATCH_BYTES):
                self._held.append(item)
                break
            items.append(item)
        return items, False

    def _work(self) -> None:
        from gpuau.kernels.loader import device_context

        try:
            with device_context(self.aus.backend):  # cuda:N: this thread's arrays on GPU N
                done = False
                while not done:
                    items, done = self._next_batch()
                    if items and self._error is None and not self._cancelled:
                        try:
                            images, landmarks, success, timestamps, recorded = zip(*items)
                            with threads.occupying():  # the landmark fit's helper thread waits for a free core
                                # no read-back: finish() gives the values
                                self.aus.add_frames(np.stack(images), np.stack(landmarks), success, timestamps,
                                                    online=False, recorder=self.recorder, recorded=recorded)
                        except BaseException as e:  # handed to the submitting thread
                            self._error = e
        finally:
            self._finished.set()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, image_bgr: np.ndarray, landmarks_2d: np.ndarray, success: bool, timestamp: float,
               recorded: "bool | None" = None) -> None:
        """Queue one frame (arguments of :meth:`~gpuau.au.AUAnalyzer.add_frame`, and the success the recorder marks it
        with: :meth:`~gpuau.au.AUAnalyzer.add_frames`' ``recorded``); raises a worker's error."""
        self._raise()
        self._queue.put((image_bgr, np.array(landmarks_2d, np.float32), bool(success), float(timestamp),
                         bool(success if recorded is None else recorded)))

    def close(self, cancel: bool = False) -> None:
        """Wait until every queued frame is analysed (``cancel``: drop the ones not started), then stop."""
        self._cancelled = cancel
        sent: list = []

        def stop_and_wait() -> None:
            if not sent:
                self._queue.put(self._STOP)  # a second one, should an interrupt land as this returns, is not read
                sent.append(True)
            self._finished.wait()

        # the thread may be writing the recorder's files, which the caller removes once this returns: an interrupt
        # while it waits (here or in the queue's put) cancels what is left and still waits for the thread
        _signals.wait_through(self._finished.is_set, stop_and_wait, lambda: setattr(self, "_cancelled", True))
        if not cancel:
            self._raise()


class Analyzer:
    """OpenFace 2.2 FeatureExtraction: landmarks, head pose and Action Units of one face per frame.

    Parameters
    ----------
    device : str or Backend
        ``"auto"`` (GPU if usable), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    models : path-like, optional
        OpenFace model folder (see :func:`gpuau.models.resolve_models_dir`).
    multi_face : bool
        Default of :meth:`analyze_video` / :meth:`write_video`: track up to 4 faces per video as
        FaceLandmarkVidMulti does, instead of FeatureExtraction's one face.
    timestamps : {"openface", "container"}
        ``"openface"`` writes OpenFace's ``frame index * (1 / fps)`` (identical CSVs); ``"container"`` writes each
        frame's presentation time from the container, exact for variable-frame-rate video.
    orientation : {"openface", "display", "stored"}
        How a video whose container asks for a rotation (phone footage) is turned: as the OpenFace build of the
        reference CSVs decodes it (default: identical CSVs; a 90 degree turn then leaves the face upside down),
        upright as players show it, or as stored (:data:`gpuau.video.ORIENTATIONS`).
    quality : {"exact", "fast"} or Quality
        Landmark fit preset (:mod:`gpuau.landmarks.quality`): ``"exact"`` is OpenFace's, ``"fast"``
        a faster approximation (see README.md, "Quality: exact vs fast").
    detect_every : int, optional
        Also re-run the face detector every ``detect_every`` frames while tracking succeeds (the
        tracked face is replaced when the new fit validates), and on those frames before a face is first found;
        None: only when tracking fails and every 12 frames until a face is found, as OpenFace does. One face per
        video only (``multi_face`` detects on its own schedule).
    camera : (fx, fy, cx, cy), optional
        The camera's focal lengths and optical centre in pixels (FeatureExtraction's ``-fx -fy -cx -cy``), for the
        head pose, the 3D landmarks and the gaze; None for a pair (``fx, fy`` or ``cx, cy``) or for all: OpenFace's
        guess from the frame size (:func:`gpuau.video.camera_intrinsics`).  Intrinsics given to a call replace it.
    au_static : bool
        FeatureExtraction's ``-au_static``: a video's AUs from the static models (``AU_all_static.txt``: no
        person-specific running medians, no neutral offsets in the offline pass, which still smooths), for
        videos too short or with too many people for the person calibration.  Multi-face videos and images
        always use the static models, as FaceLandmarkVidMulti and FaceLandmarkImg do.
    write_hog, write_aligned : bool
        FeatureExtraction's ``-hogalign`` and ``-simalign``: :meth:`write_video` also writes each video's (or image
        folder's) FHOG descriptors to ``<output stem>.hog`` and its aligned faces to ``<output stem>_aligned/``, in
        OpenFace's formats (:mod:`gpuau.io.faces`; an image's and a multi-face video's faces as FaceLandmarkImg and
        FaceLandmarkVidMulti write them).  ``write_aligned`` may also be a :class:`~gpuau.io.AlignedFaces`, the
        faces' size, scale, mask and colour (``-simsize``, ``-simscale``, ``-nomask``, ``-g``, ``-nobadaligned``).
    columns : iterable of str, optional
        FeatureExtraction's output flags: the tables keep only these column groups (some of
        :data:`gpuau.io.COLUMN_GROUPS`: ``"gaze"``, ``"pose"``, ``"2Dfp"``, ``"3Dfp"``, ``"pdmparams"``, ``"aus"``;
        ``("aus",)`` is ``-aus``), after their first columns, as OpenFace's table of those flags; None (default):
        all of them.  The groups written are the whole table's values; without ``"aus"`` (and with no ``.hog`` file
        or aligned faces to write) the AU stage does not run, as FeatureExtraction's face analyser does not.

    Notes
    -----
    One Analyzer may serve many inputs, one after another or from several threads at once: its models load once and
    are only read; each call keeps its own tracking and running-median state, so an input's table is the same bytes
    whatever the Analyzer analysed before or beside it.

    Examples
    --------
    >>> an = gpuau.Analyzer(device="cpu")                     # doctest: +SKIP
    >>> res = an.analyze_video("interview.mp4")               # doctest: +SKIP
    >>> res.to_csv("interview.csv")                           # doctest: +SKIP
    >>> an.analyze_image("group.jpg").to_csv("group.csv")     # doctest: +SKIP
    """

    def __init__(self, device: "str | Backend" = "auto", *, models: "str | os.PathLike | None" = None,
                 multi_face: bool = False, timestamps: str = "openface", quality: "str | Quality" = "exact",
                 detect_every: "int | None" = None, orientation: str = "openface", au_static: bool = False,
                 camera=None, write_hog: bool = False, write_aligned: "bool | AlignedFaces" = False,
                 columns=None):
        from gpuau.io import AlignedFaces
        from gpuau.landmarks.quality import get_quality
        from gpuau.models.store import require_models
        from gpuau.video import check_camera, check_video_options

        check_video_options(timestamps, orientation)
        self.camera = None if camera is None else check_camera(camera)
        self.timestamps = timestamps
        self.orientation = orientation
        self.backend = resolve_device(device)
        self.models = require_models(models)
        self.multi_face = _flag("multi_face", multi_face)
        self.quality = get_quality(quality)
        if detect_every is not None and (isinstance(detect_every, (bool, np.bool_))
                                         or not isinstance(detect_every, numbers.Real)
                                         or not float(detect_every).is_integer() or detect_every < 1):
            raise ValueError(f"detect_every={detect_every!r}: need a whole number of frames >= 1, or None")
        if detect_every is not None and self.multi_face:
            raise ValueError(f"detect_every={detect_every!r} with multi_face=True: the multi-face tracker detects on "
                             f"its own schedule (leave detect_every None)")
        self.detect_every = None if detect_every is None else int(detect_every)
        self.au_static = _flag("au_static", au_static)
        self.write_hog = _flag("write_hog", write_hog)
        self.write_aligned = AlignedFaces.of(write_aligned)
        self.columns = table_columns(columns, self.quality)
        self._clnf = None
        self._mtcnn = None
        self._validator = None
        self._static = None
        self._loading = threading.Lock()  # threads sharing a fresh Analyzer load its models once

    def settings(self) -> dict:
        """The keywords that build an Analyzer like this one, but the device (e.g. in a worker process)."""
        return dict(models=self.models, multi_face=self.multi_face, timestamps=self.timestamps, quality=self.quality,
                    detect_every=self.detect_every, orientation=self.orientation, au_static=self.au_static,
                    camera=self.camera, write_hog=self.write_hog, write_aligned=self.write_aligned,
                    columns=self.columns)

    def __repr__(self) -> str:
        return (f"Analyzer(device={self.backend.spec!r}, quality={self.quality.name!r}, multi_face={self.multi_face}, "
                f"au_static={self.au_static})")

    def __reduce__(self):  # pickled as its settings (to worker processes): the copy loads its models when first used
        return functools.partial(Analyzer, **self.settings()), (self.backend.spec,)

    def face_recorder(self, output: "str | os.PathLike | None", image: bool = False):
        """The :class:`~gpuau.io.FaceRecorder` of a video's (or ``image``'s) table ``output``; None when nothing is to
        be recorded."""
        from gpuau.io import FaceRecorder

        if output is None or not (self.write_hog or self.write_aligned):
            return None
        return FaceRecorder(output, hog=self.write_hog, aligned=self.write_aligned, image=image)

    def compile_kernels(self) -> None:
        """On the CPU, compile the Numba kernels if this version of gpuau has not (in child processes, once:
        :func:`gpuau.warmup.ensure_warm`); the first analysis calls it, and a caller timing its analyses can
        call it first."""
        if self.backend.name == "cpu":
            from gpuau.warmup import ensure_warm

            ensure_warm(self.models)

    # Models load once per Analyzer and are shared by every video it analyses.
    def _load(self) -> None:
        from gpuau.detect import MTCNN
        from gpuau.landmarks.quality import load_clnf
        from gpuau.landmarks.validator import DetectionValidator

        with self._loading:
            if self._clnf is None:  # set last: a load that fails (a missing model) is tried again, and raises again
                self.compile_kernels()
                clnf = load_clnf(self.models, self.quality)
                self._mtcnn = MTCNN(self.models, device=self.backend)
                self._validator = DetectionValidator.load(self.models, device=self.backend)
                self._clnf = clnf

    def camera_for(self, intrinsics=None):
        """The camera a call analyses with: its ``intrinsics`` when given, else the Analyzer's ``camera`` (values left
        None are completed from the first frame's size by the tracker), checked (:func:`gpuau.video.check_camera`)."""
        from gpuau.video import check_camera

        return self.camera if intrinsics is None else check_camera(intrinsics, "intrinsics")

    @property
    def gaze(self) -> bool:
        """Whether the tables have the gaze and eye-landmark columns: the landmark fit has both eye models
        (``quality="exact"``; ``"fast"`` leaves them out)."""
        from gpuau.landmarks.gaze import eye_parts

        self._load()
        return bool(eye_parts(self._clnf))

    def loaded_models(self) -> tuple:
        """``(clnf, mtcnn, validator)``: the CLNF, MTCNN and
        :class:`~gpuau.landmarks.validator.DetectionValidator` this Analyzer tracks with, loaded on first
        use (a :class:`gpuau.engine.Engine` built from it shares them)."""
        self._load()
        return self._clnf, self._mtcnn, self._validator

    def new_tracker(self, intrinsics, **overrides):
        """A fresh :class:`~gpuau.landmarks.tracker.FaceTracker` of this Analyzer's models and settings, for one video
        (``overrides``: FaceTracker's keywords, such as the batched engine's ``detect`` and ``validate``)."""
        from gpuau.landmarks.tracker import FaceTracker

        self._load()
        kwargs = dict(detect=self._mtcnn.detect_box, validate=self._validator.check, intrinsics=intrinsics,
                      models=self.models, device=self.backend, detect_every=self.detect_every)
        return FaceTracker(self._clnf, **{**kwargs, **overrides})

    def _multi_tracker(self, intrinsics):
        from gpuau.landmarks.multi import MultiFaceTracker

        self._load()
        return MultiFaceTracker(self._clnf, detect_all=lambda image: self._mtcnn.detect(image).boxes,
                                validate=self._validator.check, intrinsics=intrinsics, device=self.backend)

    @property
    def writes_aus(self) -> bool:
        """Whether the tables have the AU columns (``columns`` None, or with ``"aus"``)."""
        return self.columns is None or "aus" in self.columns

    def au_stage(self, recorder=None) -> bool:
        """Whether the AU stage (alignment, FHOG, AU models) runs for a table with this ``recorder``
        (:meth:`face_recorder`): for its AU columns, or for the recorder's FHOG and aligned faces.  FeatureExtraction
        runs its face analyser only for ``-aus``, ``-hogalign`` or ``-simalign`` too."""
        return self.writes_aus or recorder is not None

    def au_analyzer_for(self, recorder=None):
        """A fresh :class:`~gpuau.au.AUAnalyzer` for a video's table with this ``recorder`` (:meth:`new_au_analyzer`),
        or None where the AU stage does not run (:meth:`au_stage`)."""
        return self.new_au_analyzer() if self.au_stage(recorder) else None

    def au_column_names(self, aus=None) -> tuple:
        """``(reg_names, cls_names)`` of a table's AU columns: those of ``aus`` (an :class:`~gpuau.au.AUAnalyzer`),
        by default of the static models; none for a table without them (:attr:`writes_aus`)."""
        if not self.writes_aus:
            return (), ()
        a = self._static_analyzer() if aus is None else aus
        return a.reg_names, a.cls_names

    def new_au_analyzer(self, dynamic: "bool | None" = None):
        """A fresh :class:`~gpuau.au.AUAnalyzer`: with the dynamic models unless ``au_static`` (or ``dynamic``) says
        otherwise."""
        from gpuau.au import AUAnalyzer

        return AUAnalyzer(self.models, dynamic=not self.au_static if dynamic is None else dynamic, device=self.backend)

    def _static_analyzer(self):
        """The static AU models, AU PDM and triangulation (held by an :class:`~gpuau.au.AUAnalyzer`)."""
        if self._static is None:
            self._static = self.new_au_analyzer(dynamic=False)
        return self._static

    def _static_aus(self, image: np.ndarray, results: list, recorder=None, **names) -> list:
        """Static-model AUs of each face of one frame (``PredictStaticAUsAndComputeFeatures``), as dicts; with a
        :class:`~gpuau.io.FaceRecorder`, the faces' FHOG and aligned faces go to it (``names``: its ``numbers`` and
        ``face_ids``)."""
        from gpuau.au.analyzer import face_features, static_au_values

        if not results or not self.au_stage(recorder):
            return []
        a = self._static_analyzer()
        landmarks = np.stack([r.landmarks for r in results]).astype(np.float32)
        hog, geometry, *faces = face_features(image[None], landmarks, a.pdm, a.triangulation, self.backend,
                                              image_index=np.zeros(len(results), np.int64),
                                              aligned=None if recorder is None else recorder.aligned)
        hog, geometry = self.backend.asnumpy(hog), self.backend.asnumpy(geometry)
        if recorder is not None:
            recorder.add(hog, self.backend.asnumpy(faces[0]) if faces else None, [r.detection_success for r in results],
                         **names)
        return [static_au_values(a.models, hog[i:i + 1], geometry[i:i + 1]) for i in range(len(results))]

    def _static_au_names(self) -> list:
        """The static models' ``AU*_r`` then ``AU*_c`` columns, in OpenFace's order; none for a table without them."""
        from gpuau.io import openface_columns

        return openface_columns(*self.au_column_names(), sequence=False)[len(image_columns()):]

    @staticmethod
    def _static_au_rows(aus: list, names: list) -> np.ndarray:
        """``(faces, len(names))``: the ``names`` values of per-face dicts from :meth:`_static_aus`."""
        return np.array([[d[c] for c in names] for d in aus], np.float64).reshape(len(aus), len(names))

    def track(self, frames: Iterable, intrinsics=None, *, aus=None,
              recorder=None) -> Iterator[tuple[np.ndarray, object]]:
        """Landmark row (:func:`base_columns`) of each frame, feeding the AU analyser as it goes.

        Yields ``(row, au_analyzer)`` per :class:`~gpuau.video.Frame`; once the loop is over
        ``au_analyzer.finish()`` gives the post-processed AU columns.  The AU features are computed on
        a second thread (:class:`AUThread`) while the next frame is tracked: ``au_analyzer`` is
        complete only when the iteration has finished.  ``aus``: a fresh
        :class:`~gpuau.au.AUAnalyzer` to use (default: a new one where :meth:`au_stage` runs, else none: then
        ``au_analyzer`` is None); ``recorder``: a :class:`~gpuau.io.FaceRecorder` given every frame's FHOG and aligned
        face.
        """
        tracker = worker = None
        if aus is None:
            aus = self.au_analyzer_for(recorder)
        try:
            for frame in frames:
                _signals.check()
                self.backend.use()
                if tracker is None:
                    tracker = self.new_tracker(intrinsics)
                    if aus is not None:
                        worker = AUThread(aus, depth=queue_depth(frame.image.nbytes, AUThread.BACKLOG),
                                          recorder=recorder)
                r = tracker.track(frame.image, frame.gray)
                if worker is not None:
                    worker.submit(frame.image, r.landmarks, r.detection_success, frame.timestamp, r.success)
                yield landmark_row(frame.index + 1, frame.timestamp, r), aus
            if worker is not None:
                worker.close()  # an interrupt while it waits for the backlog cancels the rest too
        except BaseException:
            if worker is not None:
                worker.close(cancel=True)
            raise

    def track_multi(self, frames: Iterable, intrinsics=None, *, recorder=None) -> Iterator[tuple[list, list]]:
        """Rows of the faces tracked in each frame, FaceLandmarkVidMulti's way.

        Yields, per :class:`~gpuau.video.Frame`, ``(rows, aus)``: a :func:`base_columns` row (``face_id``
        = model slot) and a dict of static-model AU values for each tracked face (possibly none); ``recorder``:
        a :class:`~gpuau.io.FaceRecorder` given each row's FHOG and aligned face.
        """
        tracker = None
        for frame in frames:
            _signals.check()
            self.backend.use()
            if tracker is None:
                tracker = self._multi_tracker(intrinsics)
            faces = tracker.track(frame.image, frame.gray)
            rows = [landmark_row(frame.index + 1, frame.timestamp, r, face_id=k) for k, r in faces]
            yield rows, self._static_aus(frame.image, [r for _, r in faces], recorder,
                                         numbers=[frame.index + 1] * len(faces), face_ids=[k for k, _ in faces])

    def analyze_video(self, path: "str | os.PathLike", *, progress: "Callable[[int], None] | None" = None,
                      multi_face: "bool | None" = None) -> Result:
        """Analyse a video file or a folder of images (an image sequence) like FeatureExtraction.

        A single image file is analysed like FaceLandmarkImg (see :meth:`analyze_image`).

        Parameters
        ----------
        path : path-like
        progress : callable, optional
            Called with the number of frames done after each frame.
        multi_face : bool, optional
            Track up to 4 faces like FaceLandmarkVidMulti (default: the Analyzer's ``multi_face``):
            one row per tracked face and frame, ``face_id`` = tracking slot, static AU models.

        Raises
        ------
        gpuau.video.InputError
            Unreadable input, or no frame could be decoded.
        """
        from gpuau.video import open_source

        multi_face = None if multi_face is None else _flag("multi_face", multi_face)  # whatever the input holds
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path: a video, an image folder or an image (str or path-like), not "
                            f"{type(path).__name__}; frames in memory go to analyze_frames")
        with open_source(path, timestamps=self.timestamps, orientation=self.orientation) as source:
            if source.kind == "image":
                res = self._analyze_image_source(source)
                if progress:
                    progress(1)
                return res
            res = self._analyze(source, str(path), self.camera, progress, multi_face)
        res.warnings += [f"{path}: {note}" for note in source.decoding_notes(res.frames_decoded)]
        return res

    def analyze_frames(self, frames: Iterable[np.ndarray], *, fps: float = 30.0, intrinsics=None,
                       progress: "Callable[[int], None] | None" = None, multi_face: "bool | None" = None) -> Result:
        """Analyse an iterable of frames (BGR or gray, 8- or 16-bit, all of one size) as one video at ``fps``.

        BGR as OpenCV decodes: RGB frames (imageio, PIL, decord, torchvision) need ``frame[..., ::-1]`` first; taken
        as BGR they move the landmarks by ~0.25 px and the AU intensities by up to ~0.3.

        ``intrinsics`` ``(fx, fy, cx, cy)`` default to the Analyzer's ``camera``, completed by OpenFace's guess from
        the frame size; ``progress`` and ``multi_face`` as for :meth:`analyze_video`.
        """
        from gpuau.video import array_frames

        return self._analyze(array_frames(frames, fps), IN_MEMORY, self.camera_for(intrinsics), progress, multi_face)

    def analyze_image(self, image: "np.ndarray | str | os.PathLike", *, intrinsics=None) -> Result:
        """Every face of one image (an array or a file), as FaceLandmarkImg analyses it.

        All faces MTCNN finds are fitted (one initialisation from each box) and get a row, validated
        or not, with the static AU models; the columns are FaceLandmarkImg's (``face, confidence``,
        pose, landmarks, params, AUs; see :func:`image_columns`). An image without a face gives an
        empty table (0 rows) and a warning.

        Parameters
        ----------
        image : ndarray (H, W, 3) BGR or (H, W) grey, 8- or 16-bit; or a path
        intrinsics : (fx, fy, cx, cy), optional
            Default: the Analyzer's ``camera``, completed by OpenFace's guess from the image size.
        """
        from gpuau.video import Frame, open_source, to_bgr8, to_gray8

        if isinstance(image, (str, os.PathLike)):
            with open_source(image) as source:
                return self._analyze_image_source(source, intrinsics)
        if not isinstance(image, np.ndarray):  # a PIL image would pass as an array, its red and blue swapped
            raise TypeError(f"image: a BGR or grey NumPy array, or a path, not {type(image).__name__} (a PIL image: "
                            f"cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR))")
        bgr = to_bgr8(np.asarray(image))
        return self._analyze_image(Frame(0, 0.0, bgr, to_gray8(bgr)), "<image>", self.camera_for(intrinsics))

    def _analyze_image_source(self, source, intrinsics=None, recorder=None) -> Result:
        from gpuau.video import IMAGE_EXTENSIONS, InputError

        if source.kind != "image":
            raise InputError(source.path, "not a single image", "use analyze_video for videos and image folders; an "
                             f"image file is known by its name's ending, one of {', '.join(IMAGE_EXTENSIONS)}")
        frame = next(iter(source))
        return self._analyze_image(frame, str(source.path), self.camera_for(intrinsics), recorder)

    def _analyze_image(self, frame, name: str, intrinsics, recorder=None) -> Result:
        from gpuau.images import fit_faces
        from gpuau.io import kept_columns

        t0 = time.perf_counter()
        self._load()
        self.backend.use()
        boxes = self._mtcnn.detect(frame.image).boxes
        results = fit_faces(frame.image, frame.gray, boxes, self._clnf, self._validator.check, intrinsics, self.backend)
        aus = self._static_aus(frame.image, results, recorder)
        names = image_columns(self.gaze)
        rows = np.array([image_row(k, r) for k, r in enumerate(results)]).reshape(len(results), len(names))
        au_names = self._static_au_names()
        columns = {**_columns(names, rows), **dict(zip(au_names, self._static_au_rows(aus, au_names).T))}
        columns = {c: columns[c] for c in kept_columns(columns, self.columns)}
        warnings = [] if results else [f"{name}: no face found"]
        return Result(columns, source=name, frames_decoded=1, elapsed=time.perf_counter() - t0, warnings=warnings,
                      postprocessed=False)

    def _writer(self, multi_face: "bool | None") -> "tuple[Callable, bool]":
        """``(write, postprocessed)``: :meth:`_write_multi_rows` and False with ``multi_face`` (default: the
        Analyzer's), else :meth:`_write_rows` and True."""
        if self.multi_face if multi_face is None else _flag("multi_face", multi_face):
            if self.detect_every is not None:
                raise ValueError(f"multi_face=True with this Analyzer's detect_every={self.detect_every}: the "
                                 f"multi-face tracker detects on its own schedule (an Analyzer without detect_every)")
            return self._write_multi_rows, False
        return self._write_rows, True

    def _analyze(self, frames, name, intrinsics, progress, multi_face: "bool | None") -> Result:
        """The table of :meth:`_writer`'s rows, in memory."""
        t0 = time.perf_counter()
        write, postprocessed = self._writer(multi_face)
        columns, n, faces = write(frames, name, intrinsics, progress, None, "csv", 256)
        return Result(columns, source=name, frames_decoded=n, elapsed=time.perf_counter() - t0,
                      warnings=[f"{name}: {note}" for note in no_face_notes(n, faces)], postprocessed=postprocessed)

    def _write_multi_rows(self, frames, name, intrinsics, progress, output, fmt: str, chunk: int) -> tuple:
        """:meth:`track_multi`'s rows into a :class:`~gpuau.io.RowWriter`, the static AUs at the end.

        Returns ``(columns or None, frames, successful face rows)`` (see :meth:`gpuau.io.RowWriter.close`).
        """
        from gpuau.io import RowWriter

        names = self._static_au_names()
        aus, n, faces = [np.zeros((0, len(names)))], 0, 0  # each frame's faces' values (not dicts: ~6x the memory)
        recorder = self.face_recorder(output)
        with recorder or contextlib.nullcontext():  # its files are dropped if anything below fails
            with RowWriter(output, fmt, self.au_column_names(), chunk, files=_image_names(frames),
                           gaze=self.gaze, columns=self.columns) as table:
                for frame_rows, frame_aus in self.track_multi(frames, intrinsics, recorder=recorder):
                    for row in frame_rows:
                        table.add(row)
                    aus.append(self._static_au_rows(frame_aus, names))
                    n += 1
                    faces += sum(int(r[4]) for r in frame_rows)
                    if progress:
                        progress(n)
                columns = close_table(table, name, n, recorder, lambda: dict(zip(names, np.concatenate(aus).T)),
                                      postprocessed=False)
                return columns, n, faces

    def _write_rows(self, frames, name, intrinsics, progress, output, fmt: str, chunk: int) -> tuple:
        """:meth:`track`'s rows into a :class:`~gpuau.io.RowWriter`, the post-processed AUs at the end.

        Returns ``(columns or None, frames, frames with a tracked face)`` (see :meth:`gpuau.io.RowWriter.close`).
        """
        from gpuau.io import RowWriter

        faces = 0
        recorder = self.face_recorder(output)
        with recorder or contextlib.nullcontext():  # its files are dropped if anything below fails
            aus = self.au_analyzer_for(recorder)
            with RowWriter(output, fmt, self.au_column_names(aus), chunk, files=_image_names(frames),
                           gaze=self.gaze, columns=self.columns) as table:
                for row, _ in self.track(frames, intrinsics, aus=aus, recorder=recorder):
                    table.add(row)
                    faces += int(row[4])
                    if progress:
                        progress(table.rows)
                return (close_table(table, name, table.rows, recorder, aus.finish if aus else dict), table.rows,
                        faces)

    def write_video(self, path: "str | os.PathLike", output: "str | os.PathLike", *, format: "str | None" = None,
                    progress: "Callable[[int], None] | None" = None, chunk: int = 256,
                    on_open: "Callable | None" = None, multi_face: "bool | None" = None) -> dict:
        """Analyse ``path`` and write ``output`` atomically (rows are streamed to disk, CSV or Parquet, so memory
        stays bounded on long videos; see :class:`~gpuau.io.RowWriter`); ``format`` as :func:`output_format` says,
        the output checked first (:func:`check_output`).

        ``on_open(source)`` is called once the input is open (e.g. to size a progress bar). A single
        image gives FaceLandmarkImg's table (:meth:`analyze_image`; an image without a face gives a
        header-only file); ``multi_face`` (default: the Analyzer's) FaceLandmarkVidMulti's rows.  With the
        Analyzer's ``write_hog`` / ``write_aligned``, the ``.hog`` file and aligned faces of a video (or of an image's
        faces) are written beside ``output`` (:class:`~gpuau.io.FaceRecorder`), before it.

        Returns
        -------
        dict
            ``frames``, ``faces`` (successful frames; for ``multi_face`` successful face rows, for an
            image the faces found), ``frame_count`` (the container's), ``elapsed``, and for a video ``notes``
            (:meth:`~gpuau.video.VideoSource.decoding_notes`: an image folder's images OpenFace skips, frames decoded
            against the container's count, how a
            rotated video was turned).
        """
        from gpuau.video import open_source

        multi_face = None if multi_face is None else _flag("multi_face", multi_face)  # whatever the input holds
        format = output_format(output, format)
        check_output(output, format)
        if Path(output).exists() and os.path.samefile(output, path):  # by inode: a case-insensitive disk, a link
            raise ValueError(f"output {output}: it is the input itself, which the table would replace (give the table "
                             f"another name)")
        with open_source(path, timestamps=self.timestamps, orientation=self.orientation) as source:
            if on_open:
                on_open(source)
            if source.kind == "image":
                with self.face_recorder(output, image=True) or contextlib.nullcontext() as recorder:
                    res = self._analyze_image_source(source, recorder=recorder)
                    if recorder is not None:  # before the table, whose presence marks the input done
                        recorder.commit()
                res.write(output, format)
                if progress:
                    progress(1)
                return {"frames": 1, "faces": res.faces_found, "frame_count": 1, "elapsed": res.elapsed}
            t0 = time.perf_counter()
            _, n, faces = self._writer(multi_face)[0](source, path, self.camera, progress, output, format, chunk)
        return {"frames": n, "faces": faces, "frame_count": source.frame_count, "elapsed": time.perf_counter() - t0,
                "notes": source.decoding_notes(n)}


def table_columns(columns, quality: "Quality") -> "tuple | None":
    """An Analyzer's ``columns`` (:func:`gpuau.io.column_groups`) for a fit of ``quality``: None where they are every
    group its tables have (all six, or all but gaze for a fit without the eye models), so that naming them all records
    the same settings as naming none.

    Raises
    ------
    ValueError
        Not column groups, or gaze from a fit without the eye models.
    """
    from gpuau.io import COLUMN_GROUPS, column_groups
    from gpuau.landmarks.gaze import EYE_PARTS

    groups = column_groups(columns)
    eyes = quality.parts is None or set(EYE_PARTS) <= set(quality.parts)
    if groups and "gaze" in groups and not eyes:
        raise ValueError(f"columns={columns!r}: quality={quality.name!r} fits no eye models, so there is no gaze to "
                         "write: use quality='exact', or leave gaze out")
    every = set(COLUMN_GROUPS) - (set() if eyes else {"gaze"})
    return None if groups is not None and set(groups) >= every else groups


def close_table(table, name, frames: int, recorder, au_columns: Callable[[], dict], *, postprocessed: bool = True):
    """Complete one input's table once its ``frames`` are tracked, and close it (:meth:`gpuau.io.RowWriter.close`,
    whose return value this is): an input of no frame raises :class:`~gpuau.video.InputError` naming ``name``; the
    face recorder's files (or None) are committed before the table, whose presence marks the input done; then the
    table gets its AU columns, ``au_columns()`` (post-processed, or the static models' with ``postprocessed=False``)."""
    from gpuau.video import InputError

    if frames == 0:
        raise InputError(name, "no frames could be decoded", "the file may be empty, truncated or not a video")
    if recorder is not None:
        recorder.commit()
    return table.close(au_columns(), postprocessed=postprocessed)


def _flag(name: str, value) -> bool:
    """A yes/no setting: True, False (NumPy's too) or 0/1; a string such as ``"no"`` would be taken for True."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name}={value!r}: use True or False")


def output_format(output: "str | os.PathLike | None", format: "str | None" = None) -> str:
    """``format`` (one of :data:`FORMATS`), or by default the one ``output``'s name asks for: Parquet for ``.parquet``,
    else CSV."""
    if format is None:
        format = "parquet" if output is not None and Path(output).suffix.lower() == ".parquet" else "csv"
    if format not in FORMATS:
        raise ValueError(f"format {format!r}: use one of {', '.join(FORMATS)}")
    return format


def check_output(output: "str | os.PathLike", format: str) -> None:
    """Raise now what writing ``output`` as ``format`` would raise once the analysis is done: no pyarrow for Parquet
    (ImportError), a folder in its place, a folder that cannot be written or created (OSError)."""
    from gpuau._atomic import check_writable
    from gpuau.io.openface_csv import require_pyarrow

    if format == "parquet":
        require_pyarrow()
    check_writable(output)


def analyze_video(path: "str | os.PathLike", *, device: str = "auto", models=None,
                  output: "str | os.PathLike | None" = None, format: "str | None" = None,
                  progress: "Callable[[int], None] | None" = None, **options) -> Result:
    """Analyse one video (an image folder, an image) with a fresh :class:`Analyzer`; optionally write ``output``
    (``format`` as :func:`output_format` says), checked before the analysis starts (:func:`check_output`).

    ``device`` and ``models`` as for :class:`Analyzer`, ``options`` its other keywords (``quality``, ``multi_face``,
    ``au_static``, ``camera``, ``timestamps``, ``orientation``, ``detect_every``); ``progress`` as for
    :meth:`Analyzer.analyze_video`.  A script analysing many videos builds one Analyzer, whose models load once.
    The ``.hog`` file and aligned faces (``write_hog``, ``write_aligned``) are :meth:`Analyzer.write_video`'s.
    """
    for name in ("write_hog", "write_aligned"):
        if options.get(name):
            raise ValueError(f"{name}: analyze_video returns the table (and writes output) but writes no .hog file or "
                             f"aligned faces; use Analyzer({name}=...).write_video(path, output)")
    format = output_format(output, format)
    if output is not None:
        check_output(output, format)
    res = Analyzer(device, models=models, **options).analyze_video(path, progress=progress)
    if output is not None:
        res.write(output, format)
    return res
