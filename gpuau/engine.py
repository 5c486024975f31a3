"""Many videos in lockstep: the GPU-first batched engine.

:class:`Engine` advances up to ``B`` video streams together.  Each step takes the next frame of every
active stream and runs each stage once for all of them:

1. detection: the streams whose tracker will run MTCNN before fitting (a lost or not yet found face,
   :func:`detects_before_fit`) are detected together (:meth:`gpuau.detect.MTCNN.detect_batch`);
2. landmarks: the tracking fits of all streams' faces and the rotation hypotheses of every box of
   step 1 in one CLNF batch (:func:`gpuau.landmarks.clnf.detect_landmarks_batch`), then each stream's
   tracker step with its fit (validation, failure counters, re-detection; :meth:`Engine.track_faces`);
3. AUs: alignment, FHOG and geometry of every tracked face in one batch
   (:func:`gpuau.au.analyzer.face_features`), then each stream's running medians and prediction
   history (:meth:`gpuau.au.AUAnalyzer.add_features`), which must run in frame order;
4. rows: each stream's landmark row goes to its output; at its end the offline AU pass fills the AU
   columns, as :meth:`gpuau.pipeline.Analyzer.write_video` does.

Per-stream state lives in small objects (:class:`_Stream`: decoder, ``FaceTracker``, ``AUAnalyzer``,
output), so a stream's numbers do not depend on which streams share its steps: every output equals
the single-stream pipeline's.  Streams join as others end (a free slot takes the next job at once),
and a stream whose input is unreadable, or whose frames or compute fail, ends alone with a failed
:class:`~gpuau.corpus.Outcome`.

Memory per stream (640 x 480 video; it scales with the frame size where noted)
-------------------------------------------------------------------------------
* decoding: the background decoder holds up to 8 frames ahead plus the current one, BGR + grey,
  9 x 4 x H x W bytes = 11 MB (scales with H x W); a step stacks one frame per stream for the batched
  stages (B x 3 x H x W bytes);
* AU state: the FHOG running-median histogram (4464 x 1000 int32, 17.9 MB), the geometry histogram
  (238 x 10000 int32, 9.5 MB), the stacked AU weights (4702 x 35 float64, 1.3 MB), and per frame 35
  raw predictions plus, for the first 3000 tracked frames, 35 projections (0.6 KB per frame);
* tracker state: a few KB; models (CLNF, MTCNN, validator) and the CLNF's per-view expert arrays are
  shared by all streams (about 115 MB once);
* CLNF work buffers, transient: about 7 MB per stream in a tracking step, about 60 MB in a step where
  the stream initialises from a new box (its 11 rotation hypotheses are fitted in the batch);
* output: a CSV stream flushes every ``chunk`` rows (256 rows x 0.7K columns); Parquet and in-memory
  outputs keep all rows (5.6 KB per frame).

So about 40 MB of host memory per 640 x 480 stream plus 0.6 KB per frame, and up to 60 MB more while
it initialises (measured with tracemalloc, ``benchmarks/bench_engine.py --memory``: 107 MB per stream
at the peak of 8 streams starting together, frames held in memory).  On CUDA the device holds one
step's frames and faces; :func:`auto_streams` sizes ``B`` from free device memory with
:func:`stream_device_bytes` per stream.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from gpuau.corpus import Outcome, failed_outcome
from gpuau.device import Backend, resolve_device
from gpuau.pipeline import FORMATS, Result, base_columns, landmark_row

CPU_STREAMS = 4
"""Streams on the CPU backends when none are asked for (batching gains little there)."""

MAX_STREAMS = 128
"""Upper bound of :func:`auto_streams` (per-step Python work grows with ``B``)."""

DEVICE_FRACTION = 0.5
"""Share of the free device memory :func:`auto_streams` plans to use."""

SIZING_FRAME = (1080, 1920)
"""Frame size (H, W) :func:`auto_streams` plans for before any input is open."""


def stream_device_bytes(height: int, width: int) -> int:
    """Device memory one stream needs per step, bytes.

    The BGR and grey frame (4 bytes per pixel), a float32 grey copy for the patch experts (4), MTCNN's
    float32 RGB pyramid mosaic (about 1.2 float per pixel: the levels' areas sum to ~0.08 of the frame,
    times 3 channels, plus padding), and 6 MiB of landmark and AU work buffers for each of the 11 faces
    of an initialisation step (patch responses, aligned face, FHOG cells, descriptors; measured on the
    host, about 60 MB per initialising stream).
    """
    return int(height * width * (4 + 4 + 4 * 1.2)) + 11 * (6 << 20)


def auto_streams(backend: Backend, frame_shape: "tuple[int, int]" = SIZING_FRAME) -> int:
    """Number of streams ``B`` when none is given.

    On CUDA: :data:`DEVICE_FRACTION` of the free device memory divided by :func:`stream_device_bytes`
    of ``frame_shape``, between 1 and :data:`MAX_STREAMS`; elsewhere :data:`CPU_STREAMS`.
    """
    if not backend.is_gpu:
        return CPU_STREAMS
    import cupy

    with cupy.cuda.Device(backend.device_id):
        free, _ = cupy.cuda.runtime.memGetInfo()
    return max(1, min(MAX_STREAMS, int(free * DEVICE_FRACTION) // stream_device_bytes(*frame_shape)))


def detects_before_fit(tracker) -> bool:
    """Whether ``tracker.track`` runs the face detector before any fit on its next frame.

    That is the case while no face is tracked, on the first frame and then every
    ``6 * reinit_video_every`` frames (the first branch of ``FaceTracker._step``, from
    ``DetectLandmarksInVideo``); the engine detects these frames of all streams in one batch.  A
    re-detection after a failed tracking fit is only known after the fit and runs alone.
    """
    every = tracker.clnf.parameters.reinit_video_every
    return not tracker.tracking_initialised and (tracker.failures_in_a_row + 1) % (every * 6) == 0


@dataclass(frozen=True)
class Job:
    """One input of the engine and where its table goes.

    Attributes
    ----------
    input : path-like or iterable of :class:`gpuau.video.Frame`
        A video file or image folder (decoded in a background thread), or frames.
    output : path-like or None
        CSV or Parquet file (by :meth:`Engine.run`'s ``format``), written atomically; ``None`` keeps
        the table in memory as the outcome's ``result`` (a :class:`gpuau.pipeline.Result`).
    intrinsics : (fx, fy, cx, cy), optional
        Default: OpenFace's guess from the frame size.
    name : str
        Shown in outcomes for frame inputs (default ``"<frames>"``).
    """

    input: object
    output: "str | os.PathLike | None" = None
    intrinsics: "tuple | None" = None
    name: str = ""

    @property
    def label(self):
        """The input as outcomes name it: its path, or :attr:`name` for frames."""
        if isinstance(self.input, (str, os.PathLike)):
            return Path(self.input)
        return self.name or "<frames>"


class _Output:
    """Rows of one stream, streamed to a CSV, or kept for a Parquet file or an in-memory result."""

    def __init__(self, output, fmt: str, au_names, chunk: int):
        from gpuau.io import OpenFaceCSVWriter, openface_columns

        self.output, self.fmt, self.chunk = output, fmt, chunk
        self.names = base_columns()
        self._rows: list = []
        self._blocks: list = []
        self._writer = None
        if output is not None and fmt == "csv":
            self._writer = OpenFaceCSVWriter(output, openface_columns(*au_names))

    def add(self, row: np.ndarray) -> None:
        self._rows.append(row)
        if len(self._rows) == self.chunk:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            block = np.array(self._rows)
            if self._writer is not None:
                self._writer.write_rows({n: block[:, j] for j, n in enumerate(self.names)})
            else:
                self._blocks.append(block)
            self._rows = []

    def close(self, aus: dict, **result_fields) -> "Result | None":
        """Write the file (AU columns appended to every row); the in-memory result when no file."""
        self._flush()
        if self._writer is not None:
            self._writer.close(aus)
            return None
        rows = np.concatenate(self._blocks) if self._blocks else np.zeros((0, len(self.names)))
        res = Result({**{n: rows[:, j] for j, n in enumerate(self.names)}, **aus}, **result_fields)
        if self.output is not None:
            res.to_parquet(self.output)
            return None
        return res

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


class _Stream:
    """One video in the engine: its frames, tracking state, AU state and output.

    ``detect`` is the tracker's face detector: it returns the box the engine detected for this frame
    in the step's batch (:attr:`prefetched`), or detects alone (counted in the engine's ``stats``).
    """

    def __init__(self, job: Job, frames: Iterator, engine: "Engine", fmt: str, chunk: int, intrinsics):
        from gpuau.au import AUAnalyzer
        from gpuau.landmarks.tracker import FaceTracker

        self.job = job
        self.frames = frames
        self.mtcnn = engine.mtcnn
        self.stats = engine.stats
        self.tracker = FaceTracker(engine.clnf, detect=self.detect, validate=engine.validate, intrinsics=intrinsics,
                                   models=engine.models, device=engine.backend)
        self.aus = AUAnalyzer(engine.models, device=engine.backend)
        self.output = _Output(job.output, fmt, (self.aus.reg_names, self.aus.cls_names), chunk)
        self.prefetched: "tuple[np.ndarray, object] | None" = None
        self.frames_done = 0
        self.faces = 0
        self.elapsed = 0.0

    def detect(self, image: np.ndarray):
        from gpuau.landmarks.tracker import select_box

        if self.prefetched is not None and self.prefetched[0] is image:
            box, self.prefetched = self.prefetched[1], None
            return box
        self.stats["detections_alone"] += 1
        return select_box(self.mtcnn.detect(image))

    def next_frame(self):
        """The next frame, or None at the end of the input."""
        return next(self.frames, None)

    def abort(self) -> None:
        """Stop decoding and drop the output (a failed stream)."""
        close = getattr(self.frames, "close", None)
        if close is not None:
            close()
        self.output.abort()


@dataclass
class _Item:
    """One stream's frame in the current step and what the stages made of it."""

    stream: _Stream
    frame: object
    result: object = None


class Engine:
    """OpenFace FeatureExtraction on many videos at once, stages batched across streams.

    Parameters
    ----------
    device : str or Backend
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"emulated"`` (the ``.cu`` kernels on the
        CPU emulator, for tests).
    models : path-like, optional
        OpenFace model folder.
    streams : int, optional
        Streams advanced in lockstep (``B``); default :func:`auto_streams`.
    chunk : int
        CSV rows written per flush.

    Attributes
    ----------
    stats : dict[str, int]
        Counts since construction: ``steps``, ``frames``, ``detections_batched`` (frames detected in a
        step's batch), ``detect_batches`` (``detect_batch`` calls) and ``detections_alone``
        (re-detections after a failed tracking fit, one frame at a time).

    Examples
    --------
    >>> eng = Engine("cuda")                                          # doctest: +SKIP
    >>> jobs = [Job(p, f"out/{Path(p).stem}.csv") for p in videos]    # doctest: +SKIP
    >>> for outcome in eng.run(jobs):                                 # doctest: +SKIP
    ...     print(outcome.input, outcome.status, outcome.frames)
    """

    def __init__(self, device: "str | Backend" = "auto", *, models: "str | os.PathLike | None" = None,
                 streams: "int | None" = None, chunk: int = 256):
        from gpuau.detect import MTCNN
        from gpuau.landmarks.clnf import CLNF
        from gpuau.landmarks.validator import DetectionValidator
        from gpuau.models.store import require_models

        self.backend = resolve_device(device)
        self.models = require_models(models)
        self.streams = auto_streams(self.backend) if streams is None else int(streams)
        if self.streams < 1:
            raise ValueError(f"streams={streams}: need at least 1")
        self.chunk = int(chunk)
        self.clnf = CLNF.load(self.models)
        self.mtcnn = MTCNN(self.models, device=self.backend)
        self.validate = DetectionValidator.load(self.models).check
        self.stats = dict.fromkeys(("steps", "frames", "detections_batched", "detect_batches", "detections_alone"), 0)

    # -- jobs ------------------------------------------------------------------------------------
    def _open(self, job: Job, fmt: str) -> _Stream:
        from gpuau.video import InputError, open_source

        intrinsics = job.intrinsics
        if isinstance(job.input, (str, os.PathLike)):
            source = open_source(job.input)
            if source.kind == "image":
                raise InputError(source.path, "a single image, not a video",
                                 "analyse images with Analyzer.analyze_image")
            frames = iter(source)
            intrinsics = intrinsics or source.intrinsics
        else:
            frames = iter(job.input)
        return _Stream(job, frames, self, fmt, self.chunk, intrinsics)

    def _finish(self, s: _Stream) -> Outcome:
        from gpuau.video import InputError

        if s.frames_done == 0:
            raise InputError(s.job.label, "no frames could be decoded", "the file may be empty, truncated or not a video")
        result = s.output.close(s.aus.finish(), source=str(s.job.label), frames_decoded=s.frames_done, elapsed=s.elapsed)
        return Outcome(s.job.label, s.job.output, "done", frames=s.frames_done, faces=s.faces, elapsed=s.elapsed,
                       result=result)

    def _fail(self, s: "_Stream | None", job: Job, error: BaseException) -> Outcome:
        if s is not None:
            s.abort()
        return failed_outcome(job.label, job.output, error)

    def run(self, jobs: Iterable, *, format: str = "csv",
            progress: "Callable[[int], None] | None" = None) -> Iterator[Outcome]:
        """Analyse every job, ``B`` streams at a time; yield each job's outcome as its stream ends.

        Parameters
        ----------
        jobs : iterable of Job or (input, output) pairs
        format : {"csv", "parquet"}
            Format of the jobs' output files.
        progress : callable, optional
            Called with the number of frames done so far (all streams) after each step.

        Yields
        ------
        Outcome
            ``"done"`` (``result`` holds the table of a job without output file) or ``"failed"``
            with the reason; ``elapsed`` is the stream's share of the engine's steps, so the
            elapsed times of all outcomes add up to the engine's time.
        """
        if format not in FORMATS:
            raise ValueError(f"format {format!r}: use one of {FORMATS}")
        queue = (j if isinstance(j, Job) else Job(*j) for j in jobs)
        active: list = []
        done = 0
        try:
            while True:
                items, ended = self._gather(active, queue, format)
                active = [it.stream for it in items]
                yield from ended
                if not items:
                    return
                t0 = time.perf_counter()
                yield from self._step(items)
                share = (time.perf_counter() - t0) / len(items)
                for it in items:
                    it.stream.elapsed += share
                active = [it.stream for it in items if it.result is not None]
                done += len(items)
                self.stats["steps"] += 1
                self.stats["frames"] += len(items)
                if progress:
                    progress(done)
        finally:  # closed early (or an error outside any stream): drop the unfinished outputs
            for s in active:
                s.abort()

    def _gather(self, active: list, queue: Iterator, fmt: str) -> "tuple[list, list]":
        """Next frame of each active stream, streams that ended replaced from ``queue``.

        Returns the step's items and the outcomes of the streams that ended (finished, failed to open,
        or failed decoding).
        """
        items, ended = [], []
        pending = list(active)
        while pending or len(items) < self.streams:
            if pending:
                s, job = pending.pop(0), None
            else:
                job = next(queue, None)
                if job is None:
                    break
                try:
                    s = self._open(job, fmt)
                except Exception as e:
                    ended.append(self._fail(None, job, e))
                    continue
            try:
                frame = s.next_frame()
                if frame is None:
                    ended.append(self._finish(s))
                else:
                    items.append(_Item(s, frame))
            except Exception as e:
                ended.append(self._fail(s, s.job, e))
        return items, ended

    # -- one step --------------------------------------------------------------------------------
    def _step(self, items: list) -> Iterator[Outcome]:
        """Detection, landmarks, AUs and rows of one frame per stream; outcomes of streams that failed.

        A failed stream's item keeps ``result = None`` and leaves the engine.
        """
        self.detect_faces(items)
        failed = self.track_faces(items)
        failed += self.add_aus([it for it in items if it.result is not None])
        for it, _ in failed:
            it.result = None
        for it in items:
            if it.result is None:
                continue
            s, f, r = it.stream, it.frame, it.result
            try:
                s.output.add(landmark_row(f.index + 1, f.timestamp, r))
            except Exception as e:
                failed.append((it, e))
                it.result = None
                continue
            s.frames_done += 1
            s.faces += int(r.success)
        for it, e in failed:
            yield self._fail(it.stream, it.stream.job, e)

    def detect_faces(self, items: list) -> None:
        """MTCNN on the frames of every stream whose tracker detects before fitting, in one batch."""
        from gpuau.landmarks.tracker import select_box

        need = [it for it in items if detects_before_fit(it.stream.tracker)]
        if not need:
            return
        try:
            detections = self.mtcnn.detect_batch([it.frame.image for it in need])
        except Exception:  # leave each stream to detect alone, so that a failure stays its own
            return
        for it, d in zip(need, detections):
            it.stream.prefetched = (it.frame.image, select_box(d))
        self.stats["detect_batches"] += 1
        self.stats["detections_batched"] += len(need)

    def track_faces(self, items: list) -> list:
        """Landmarks of every stream's frame (``it.result`` = :class:`~gpuau.landmarks.tracker.LandmarkResult`).

        One :func:`~gpuau.landmarks.clnf.detect_landmarks_batch` per frame size fits every face of the
        step: the tracked faces (from each tracker's
        :meth:`~gpuau.landmarks.tracker.FaceTracker.tracking_request`) and the rotation hypotheses of
        each box detected in the step's batch (:func:`~gpuau.landmarks.tracker.box_hypotheses`, best
        kept by :func:`~gpuau.landmarks.tracker.best_hypothesis`).  Then each tracker finishes its step
        with its fit (validation, failure counters, a re-detection after a failed fit).

        Returns
        -------
        list of (item, exception)
            Streams whose tracking failed.
        """
        from gpuau.landmarks.clnf import detect_landmarks_batch
        from gpuau.landmarks.tracker import best_hypothesis, box_hypotheses

        init = self.clnf.parameters.window_sizes_init
        zeros = np.zeros(self.clnf.model.pdm.n_modes, np.float32)
        groups: dict = {}  # frame shape -> [(item index, "fit" | "box_fit", g (k, 6), p (k, m), windows (k, S))]
        for i, it in enumerate(items):
            try:
                request = it.stream.tracker.tracking_request()
                if request is not None:
                    g, p, w = request
                    faces = (i, "fit", np.asarray(g)[None], np.asarray(p)[None], np.asarray(w)[None])
                elif it.stream.prefetched is not None and it.stream.prefetched[1] is not None:
                    g = box_hypotheses(self.clnf, it.stream.prefetched[1])
                    faces = (i, "box_fit", g, np.tile(zeros, (len(g), 1)), np.tile(init, (len(g), 1)))
                else:
                    continue
            except Exception:  # the stream's own track call below reports it
                continue
            groups.setdefault(it.frame.gray.shape, []).append(faces)
        fits: dict = {i: {} for i in range(len(items))}
        for group in groups.values():
            try:
                images = self.backend.asarray(np.stack([items[f[0]].frame.gray for f in group]).astype(np.float32))
                index = np.concatenate([np.full(len(f[2]), k) for k, f in enumerate(group)])
                g, p, w = (np.concatenate([f[j] for f in group]) for j in (2, 3, 4))
                results = detect_landmarks_batch(self.clnf, images, index, g, p, w, backend=self.backend)
            except Exception:  # each stream then fits alone, so that a failure stays its own
                continue
            start = 0
            for i, kind, g, _, _ in group:
                faces, start = results[start:start + len(g)], start + len(g)
                likelihood = items[i].stream.tracker.likelihood
                fits[i][kind] = faces[0] if kind == "fit" else best_hypothesis(faces, likelihood)
        failed = []
        for i, it in enumerate(items):
            try:
                it.result = it.stream.tracker.track(it.frame.image, it.frame.gray, **fits[i])
            except Exception as e:
                failed.append((it, e))
        return failed

    def add_aus(self, items: list) -> list:
        """FHOG and geometry of every tracked face in one batch per frame size, then each stream's
        sequential AU update (:meth:`gpuau.au.AUAnalyzer.add_features`).

        Frames without a tracked face get the zero descriptors ``AUAnalyzer.add_frame`` uses.

        Returns
        -------
        list of (item, exception)
            Streams whose AU computation failed.
        """
        from gpuau.au.analyzer import HOG_SIZE

        failed = []
        if not items:
            return failed
        n_geometry = items[0].stream.aus.models.weights.shape[0] - HOG_SIZE
        hog = np.zeros((len(items), HOG_SIZE), np.float32)
        geometry = np.zeros((len(items), n_geometry))
        groups: dict = {}
        for i, it in enumerate(items):
            if it.result.detection_success:
                groups.setdefault(it.frame.image.shape, []).append(i)
        bad: dict = {}
        for idx in groups.values():
            try:
                hog[idx], geometry[idx] = self._features([items[i] for i in idx])
            except Exception:  # find which stream's face fails, keep the others
                for i in idx:
                    try:
                        hog[i], geometry[i] = (a[0] for a in self._features([items[i]]))
                    except Exception as e:
                        bad[i] = e
        for i, it in enumerate(items):
            if i in bad:
                failed.append((it, bad[i]))
                continue
            try:
                it.stream.aus.add_features(hog[i], geometry[i], it.result.detection_success, it.frame.timestamp)
            except Exception as e:
                failed.append((it, e))
        return failed

    def _features(self, items: list) -> "tuple[np.ndarray, np.ndarray]":
        """:func:`~gpuau.au.analyzer.face_features` of the tracked faces of same-sized frames."""
        from gpuau.au.analyzer import face_features

        aus = items[0].stream.aus
        images = np.stack([it.frame.image for it in items])
        landmarks = np.stack([it.result.landmarks for it in items]).astype(np.float32)
        return face_features(images, landmarks, aus.pdm, aus.triangulation, self.backend)

