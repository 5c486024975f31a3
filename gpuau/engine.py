"""Many videos in lockstep: the GPU-first batched engine.

:class:`Engine` advances up to ``B`` video streams together.  Each step takes the next frame of every
active stream and runs each stage once for all of them:

1. detection: the streams whose tracker will run MTCNN before fitting (a lost or not yet found face,
   :meth:`FaceTracker.detects_before_fit`) are detected together (:meth:`gpuau.detect.MTCNN.detect_batch`);
2. landmarks: the tracking fits of all streams' faces and the rotation hypotheses of every box of
   step 1 in one CLNF batch per frame size (:func:`gpuau.landmarks.clnf.detect_landmarks_batch`),
   then every fit the trackers will validate in one validator call
   (:meth:`gpuau.landmarks.validator.DetectionValidator.check_batch`);
3. re-detection: the streams whose tracker detects after its fit (a failed fit every
   ``reinit_video_every`` frames, or ``detect_every``'s schedule: :meth:`FaceTracker.detects_after_fit`) are
   detected together, their boxes' hypotheses fitted in one CLNF batch and validated in one call;
   then each stream's tracker step takes its fits, boxes and certainties
   (:meth:`gpuau.landmarks.tracker.FaceTracker.track` with ``fit`` and ``box_fit``);
4. AUs: alignment, FHOG and geometry of every tracked face in one batch
   (:func:`gpuau.au.analyzer.face_features`), then every stream's running medians and prediction
   history in one call (:func:`gpuau.au.analyzer.add_features_batch`), in frame order within each stream;
5. rows: each stream's landmark row goes to its :class:`~gpuau.io.RowWriter`; at its end the offline
   AU pass fills the AU columns, as :meth:`gpuau.pipeline.Analyzer.write_video` does.

Per-stream state lives in small objects (:class:`_Stream`: decoder, ``FaceTracker``, ``AUAnalyzer``,
output), so a stream's numbers do not depend on which streams share its steps: every output equals
the single-stream pipeline's with the same settings (``quality``, ``detect_every``, ``timestamps``,
``orientation``).
A prediction of steps 1 and 3 that a tracker does not follow costs time, not correctness: the
tracker then detects or validates alone (counted in :attr:`Engine.stats`).  Streams join as others
end (a free slot takes the next job at once), and a stream whose input is unreadable, or whose frames
or compute fail, ends alone with a failed :class:`~gpuau.outcome.Outcome`.

Frames reach the device through :class:`FrameStaging`: the float32 grey levels and the uint8 BGR
pixels of a step are written into (pinned, on CUDA) host buffers and copied on a separate CUDA stream
into one of two sets of device buffers; the CLNF fits read the grey levels there, MTCNN's pyramid and
the AU stage's alignment the BGR pixels, so each frame crosses the bus once per step.  After step
``t``'s landmark stages each stream decodes its next frame and step ``t + 1``'s copy starts while step
``t``'s AU stage computes (from the other buffers); step ``t + 1`` waits for its copy only when it uses
the images.  On the CPU backend the same code runs with the host buffers as the device's
(:class:`HostTransfers`: nothing is copied), and the stages read the same arrays they did; on the emulated
one the copies happen at once (:class:`EmulatedTransfers`).

Memory per stream (640 x 480 video; it scales with the frame size where noted)
-------------------------------------------------------------------------------
* decoding: the background decoder holds up to 8 frames ahead plus the current one and the next
  (decoded during the step), BGR + grey, 10 x 4 x H x W bytes = 12 MB (scales with H x W);
* frame staging: two float32 grey images and two uint8 BGR images (the double buffer),
  14 x H x W bytes = 4.3 MB of host memory (pinned on CUDA, where as much device memory holds their
  copies), which the CLNF fits, MTCNN and the AU stage read;
* AU state, on the backend's device (host memory on the CPU backends): the FHOG running-median
  histogram (4464 x 1000 int32, 17.9 MB) and the geometry histogram (238 x 10000 int32, 9.5 MB)
  (:data:`gpuau.au.analyzer.STATE_BYTES`, 27.4 MB), the projections of the first 3000 tracked frames
  (0.84 MB) and the newest 4096 frames' raw predictions (1.1 MB); in host memory the earlier frames' raw
  predictions (35 per frame, 0.28 KB: 30 MB per hour at 30 frames/s);
* tracker state: a few KB; models (CLNF, MTCNN, validator, the stacked AU weights) and the CLNF's
  per-view expert arrays are shared by all streams (about 115 MB once per process, shared with the
  Analyzer of :meth:`Engine.from_analyzer`);
* CLNF work buffers, transient: about 7 MB per stream in a tracking step, about 60 MB in a step where
  the stream initialises from a new box (its 11 rotation hypotheses are fitted in the batch);
* output: a CSV or Parquet stream flushes every ``chunk`` rows (256 rows x 0.7K columns) to a file
  (:class:`~gpuau.io.RowWriter`); an in-memory output keeps all rows (5.6 KB per frame).

So on the CPU backends about 44 MB of host memory per 640 x 480 stream plus 0.56 KB per frame, and up
to 60 MB more while it initialises (measured with tracemalloc, ``benchmarks/bench_engine.py --memory``:
55 MB per stream at the peak of 8 streams starting together, their 60 frames each held in memory; 52 MB
before the BGR frames were staged too, 107 MB before the AU models were shared per process); on CUDA the
AU state moves to the device and about 16 MB of host memory remain per stream.  The device holds each
stream's AU state and history, two steps' grey and BGR frames (the double buffer), one step's MTCNN
pyramids and faces; :func:`auto_streams` sizes ``B`` from
free device memory with :func:`stream_device_bytes` per stream (about 146 MB for 1080p).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sized

import numpy as np

from gpuau import _signals
from gpuau.device import Backend
from gpuau.outcome import Outcome, failed_outcome
from gpuau.pipeline import Analyzer, Result, close_table, landmark_row, output_format
from gpuau.video import IN_MEMORY

CPU_STREAMS = 4
"""Streams on the CPU backends when none are asked for (batching gains little there)."""

MAX_STREAMS = 128
"""Upper bound of :func:`auto_streams` (per-step Python work grows with ``B``)."""

DEVICE_FRACTION = 0.5
"""Share of the free device memory :func:`auto_streams` plans to use."""

SIZING_FRAME = (1080, 1920)
"""Frame size (H, W) :func:`auto_streams` plans for before any input is open."""

DECODERS = ("opencv", "nvdec")
"""Video decoders of :class:`Engine` (``decode``)."""

log = logging.getLogger(__name__)


def stream_device_bytes(height: int, width: int) -> int:
    """Device memory one stream needs, bytes: its AU state plus its share of a step.

    The AU stage's running-median histograms (:data:`gpuau.au.analyzer.STATE_BYTES`, 27.4 MB, held for the
    stream's whole life); per step the staging double buffer's two float32 grey, two uint8 grey (their copy
    before conversion) and two uint8 BGR images (16 bytes per pixel), MTCNN's input gathered from them (3)
    and its float32 RGB pyramid mosaic (about 1.2 float per pixel: the levels' areas sum to ~0.08 of the
    frame, times 3 channels, plus padding), and 6 MiB of landmark and AU work buffers for each of the 11
    faces of an initialisation step (patch responses, aligned face, FHOG cells, descriptors; measured on the
    host, about 60 MB per initialising stream).  So about 146 MB for a 1080p stream, 104 MB for 640 x 480.
    The models are shared by all streams and not counted; nor are the AU history's 2 MB on the device (the
    projections of the first 3000 tracked frames, the newest 4096 frames' predictions: the earlier ones go to the
    host, 0.28 KB per frame), which live in the memory :data:`DEVICE_FRACTION` leaves free.
    """
    from gpuau.au.analyzer import STATE_BYTES

    return int(height * width * (16 + 3 + 4 * 1.2)) + 11 * (6 << 20) + STATE_BYTES


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
        Default: the engine's ``camera``, completed by OpenFace's guess from the frame size.
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
        return self.name or IN_MEMORY


# -- frames to the device ------------------------------------------------------------------------
class HostTransfers:
    """Buffers and copies of :class:`FrameStaging` on the CPU backend: NumPy arrays, no events (every
    wait is a no-op), and no copies: the host buffers are the device's (:attr:`shares_memory`).

    :class:`CudaTransfers` has the same methods; a test double may record the calls.
    """

    shares_memory = True
    """The device reads the host buffers themselves: :class:`FrameStaging` allocates no device buffers
    and copies nothing."""

    def host_buffer(self, shape: tuple, dtype=np.float32) -> np.ndarray:
        """A host buffer (pinned on CUDA)."""
        return np.empty(shape, dtype)

    def device_buffer(self, shape: tuple, dtype=np.float32):
        """An array on the backend's device."""
        return np.empty(shape, dtype)

    def copy(self, device, host):
        """Copy ``host`` into ``device`` (asynchronously on CUDA); the event that marks its end."""
        device[...] = host

    def convert(self, device, source):
        """Convert the device array ``source`` into ``device``'s dtype, after the copies enqueued so far
        (on the copy stream on CUDA); the event that marks its end."""
        device[...] = source

    def compute_event(self):
        """An event after the work enqueued so far on the compute stream."""

    def compute_waits(self, event) -> None:
        """Work enqueued on the compute stream from now on waits for ``event``."""

    def copies_wait(self, event) -> None:
        """Copies enqueued from now on wait for ``event``."""

    def synchronize(self, event) -> None:
        """Block the host until ``event`` has happened."""


class CudaTransfers(HostTransfers):
    """:class:`HostTransfers` on CUDA: pinned host buffers, device arrays, copies on their own
    non-blocking stream, ordered with the compute stream (CuPy's current stream) by events.

    Its calls are checked against a fake CuPy in tests/test_engine.py, the ordering logic with a
    recording double; real pinned memory, asynchronous copies and their overlap need a GPU run.
    """

    shares_memory = False

    def __init__(self, backend: Backend):
        import cupy

        self.cp = cupy
        with cupy.cuda.Device(backend.device_id):
            self.stream = cupy.cuda.Stream(non_blocking=True)

    def host_buffer(self, shape: tuple, dtype=np.float32) -> np.ndarray:
        n = int(np.prod(shape))
        try:
            memory = self.cp.cuda.alloc_pinned_memory(max(n, 1) * np.dtype(dtype).itemsize)
        except self.cp.cuda.runtime.CUDARuntimeError as e:  # pinned memory runs out as cudaErrorMemoryAllocation
            if e.status != self.cp.cuda.runtime.errorMemoryAllocation:
                raise
            raise MemoryError(f"pinned host memory for {shape} {np.dtype(dtype).name}: {e}") from e
        return np.frombuffer(memory, dtype, n).reshape(shape)

    def device_buffer(self, shape: tuple, dtype=np.float32):
        return self.cp.empty(shape, dtype)

    def copy(self, device, host):
        device.set(host, stream=self.stream)
        return self.stream.record()

    def convert(self, device, source):
        with self.stream:
            device[...] = source
        return self.stream.record()

    def compute_event(self):
        return self.cp.cuda.get_current_stream().record()

    def compute_waits(self, event) -> None:
        if event is not None:
            self.cp.cuda.get_current_stream().wait_event(event)

    def copies_wait(self, event) -> None:
        if event is not None:
            self.stream.wait_event(event)

    def synchronize(self, event) -> None:
        if event is not None:
            event.synchronize()


class EmulatedTransfers(HostTransfers):
    """:class:`HostTransfers` on the emulated backend: device arrays of its own (CuPy's rules,
    :mod:`gpuau.kernels.emulated_arrays`) filled by copies that end at once, so the staging takes CUDA's path
    (frames copied, grey levels converted on the device) without its streams and events."""

    shares_memory = False

    def __init__(self, backend: Backend):
        self.xp = backend.xp

    def device_buffer(self, shape: tuple, dtype=np.float32):
        return self.xp.empty(shape, dtype)


def transfers_for(backend: Backend) -> HostTransfers:
    """:class:`CudaTransfers` on a CUDA backend, :class:`EmulatedTransfers` on the emulated one, else
    :class:`HostTransfers`."""
    if backend.is_gpu:
        return CudaTransfers(backend)
    return EmulatedTransfers(backend) if backend.name == "emulated" else HostTransfers()


@dataclass
class _Slot:
    """One half of the double buffer for frames of one size: host and device images (grey and uint8
    BGR), the event ending their last copy and the one ending the last compute that read them.

    The device reads float32 grey levels.  Where it has its own memory the host buffer holds the uint8
    grey levels, copied into ``device_gray8`` and converted there (a quarter of the bytes cross the bus,
    and the host does no conversion); where it reads the host buffers, ``host`` is the float32 image."""

    host: np.ndarray
    device: object
    host_bgr: np.ndarray
    device_bgr: object
    device_gray8: object = None
    copied: object = None
    used: object = None


@dataclass
class _Staged:
    """Frames of one size copied (or being copied) into a slot, and each frame's row."""

    slot: _Slot
    frames: list
    rows: dict = field(default_factory=dict)


class FrameStaging:
    """A step's frames on the device, double-buffered: their float32 grey levels (the CLNF fits) and
    their uint8 BGR pixels (MTCNN's pyramid, the AU stage's alignment), so each frame crosses the bus
    once.

    :meth:`stage` writes the frames of one step into the host buffers of the next slot (after their
    previous copy has ended) and starts their copy into the slot's device buffers (after the compute
    that last read them has ended); :meth:`images` and :meth:`bgr` give the device images of a group of
    frames of the latest two stages, the compute stream waiting for their copy; :meth:`release` marks
    the end of a step's reads.  So while step ``t`` computes from one slot, step ``t + 1``'s frames go
    into the other.

    Parameters
    ----------
    transfers : HostTransfers
        :func:`transfers_for` the backend.
    """

    def __init__(self, transfers: HostTransfers):
        self.transfers = transfers
        self._slots: "list[dict]" = [{}, {}]  # per turn: frame shape -> _Slot
        self._turn = 0
        self._staged: dict = {}  # frame shape -> _Staged of the latest stage()
        self._before: dict = {}  # the same of the stage() before (the other slot)

    def covers(self, frames: list) -> bool:
        """Whether every frame of ``frames`` is in the latest :meth:`stage`."""
        return all(f.gray.shape in self._staged and id(f) in self._staged[f.gray.shape].rows for f in frames)

    def stage(self, frames: list) -> dict:
        """Start copying the grey levels of ``frames`` (:class:`gpuau.video.Frame`) to the device; returns the error
        of each frame size whose buffers could not be allocated (its frames are not staged)."""
        self._turn ^= 1
        slots = self._slots[self._turn]
        groups: dict = {}
        for f in frames:
            groups.setdefault(f.gray.shape, []).append(f)
        for shape in [s for s in slots if s not in groups]:  # sizes no longer streamed: free them
            self._retire(slots.pop(shape))
        staged, failed = {}, {}
        for shape, group in groups.items():
            slot = slots.get(shape)
            if slot is None or len(slot.host) < len(group):
                grown = len(group) if slot is None else max(len(group), 2 * len(slot.host))
                if slot is not None:
                    self._retire(slots.pop(shape))
                try:
                    slot = slots[shape] = self._slot(grown, shape)
                except MemoryError as e:  # (CuPy's OutOfMemoryError is one): only the streams of this size fail
                    failed[shape] = e
                    continue
            self.transfers.synchronize(slot.copied)  # the host buffers are free again
            if self.transfers.shares_memory:
                self.transfers.copies_wait(slot.used)  # the host buffers are the device's
            for k, f in enumerate(group):
                slot.host[k] = f.gray
                slot.host_bgr[k] = f.image
            if not self.transfers.shares_memory:
                self.transfers.copies_wait(slot.used)  # the device buffers are free again
                n = len(group)
                self.transfers.copy(slot.device_gray8[:n], slot.host[:n])
                self.transfers.convert(slot.device[:n], slot.device_gray8[:n])
                slot.copied = self.transfers.copy(slot.device_bgr[:n], slot.host_bgr[:n])  # after the grey ones
            staged[shape] = _Staged(slot, group, {id(f): k for k, f in enumerate(group)})
        self._staged, self._before = staged, self._staged
        return failed

    def _retire(self, slot: _Slot) -> None:
        """Wait until nothing uses ``slot``'s buffers, which are freed next: CuPy may hand their device memory to new
        buffers at once, and the copy stream writes into a new buffer without waiting for the compute that read the
        old one (rare: when a frame size leaves the steps, or more frames of one size are staged than before)."""
        self.transfers.synchronize(slot.copied)
        self.transfers.synchronize(slot.used)

    def _slot(self, n: int, shape: tuple) -> _Slot:
        """Buffers for ``n`` frames of ``shape``: host ones, and device ones unless the device reads the host's."""
        t = self.transfers
        host_bgr = t.host_buffer((n, *shape, 3), np.uint8)
        if t.shares_memory:
            host = t.host_buffer((n, *shape))
            return _Slot(host, host, host_bgr, host_bgr)
        return _Slot(t.host_buffer((n, *shape), np.uint8), t.device_buffer((n, *shape)), host_bgr,
                     t.device_buffer((n, *shape, 3), np.uint8), t.device_buffer((n, *shape), np.uint8))

    def _find(self, frames: list) -> _Staged:
        """The staged group (latest stage first, else the one before) holding ``frames``, all of one size."""
        for stages in (self._staged, self._before):
            staged = stages.get(frames[0].gray.shape)
            if staged is not None and all(id(f) in staged.rows for f in frames):
                return staged
        raise KeyError("frames not staged in the latest two steps")

    def images(self, frames: list) -> "tuple[object, np.ndarray]":
        """Device images ``(n, H, W)`` float32 holding ``frames`` (staged, all of one size) and each
        frame's index in them."""
        return self._device(frames, "device")

    def bgr(self, frames: list) -> "tuple[object, np.ndarray]":
        """Device images ``(n, H, W, 3)`` uint8 BGR holding ``frames`` (staged, all of one size) and each
        frame's index in them."""
        return self._device(frames, "device_bgr")

    def _device(self, frames: list, buffer: str) -> "tuple[object, np.ndarray]":
        """The slot's device ``buffer`` holding ``frames`` (the compute stream waiting for its copy) and
        each frame's index in it."""
        staged = self._find(frames)
        self.transfers.compute_waits(staged.slot.copied)
        rows = np.array([staged.rows[id(f)] for f in frames], np.int64)
        return getattr(staged.slot, buffer)[:len(staged.frames)], rows

    def release(self, frames: "list | None" = None) -> None:
        """The compute reading the staged images of ``frames`` (default: of the latest stage) is all
        enqueued."""
        event = self.transfers.compute_event()
        if frames is None:
            groups = self._staged.values()
        else:
            shapes = {f.gray.shape for f in frames}
            groups = [self._find([f for f in frames if f.gray.shape == shape]) for shape in shapes]
        for staged in groups:
            staged.slot.used = event


# -- streams -------------------------------------------------------------------------------------
class _Stream:
    """One video in the engine: its frames, tracking state, AU state and output.

    ``detect`` and ``validate`` are the tracker's face detector and validator: they return what the
    engine computed for this frame in a step's batch (:attr:`prefetched` box, :attr:`certainties`), or
    compute alone (counted in the engine's ``stats``).
    """

    def __init__(self, job: Job, frames: Iterator, engine: "Engine", fmt: str, intrinsics,
                 files: "list[str] | None" = None, source=None):
        from gpuau.io import RowWriter

        self.job = job
        self.frames = frames
        self.source = source  # the VideoSource of a path input (released by close()), else None
        self.progress: "Callable[[int], None] | None" = None  # from Engine.run's on_open
        self.engine = engine
        analyzer = engine.analyzer
        self.tracker = analyzer.new_tracker(intrinsics, detect=self.detect, validate=self.validate,
                                            camera_space=False)  # the engine poses a step's faces together
        self.recorder = analyzer.face_recorder(job.output)  # FHOG / aligned faces, or None
        try:
            self.aus = analyzer.au_analyzer_for(self.recorder)
            self.output = RowWriter(job.output, fmt, analyzer.au_column_names(self.aus), engine.chunk, files=files,
                                    gaze=analyzer.gaze, columns=analyzer.columns)
        except BaseException:
            if self.recorder is not None:
                self.recorder.abort()
            raise
        self.prefetched: "tuple[np.ndarray, object] | None" = None
        self.certainties: list = []  # (landmarks array, certainty) of this frame's fits, validated in a batch
        self._ahead: "tuple | None" = None  # (frame or None,) decoded ahead, or (exception,)
        self.frames_done = 0
        self.faces = 0
        self.elapsed = 0.0

    def detect(self, image: np.ndarray):
        if self.prefetched is not None and self.prefetched[0] is image:
            box, self.prefetched = self.prefetched[1], None
            return box
        self.engine.stats["detections_alone"] += 1
        return self.engine.mtcnn.detect_box(image)

    def batched_certainty(self, landmarks: np.ndarray, *, take: bool = False) -> "float | None":
        """The certainty a step's batch validated for ``landmarks`` (that very array), or None; ``take``
        removes it from :attr:`certainties`."""
        for k, (lm, certainty) in enumerate(self.certainties):
            if lm is landmarks:
                if take:
                    del self.certainties[k]
                return certainty
        return None

    def validate(self, gray: np.ndarray, landmarks: np.ndarray, orientation) -> float:
        certainty = self.batched_certainty(landmarks, take=True)
        if certainty is not None:
            return certainty
        self.engine.stats["validations_alone"] += 1
        return self.engine.validator.check(gray, landmarks, orientation)

    def next_frame(self):
        """The next frame, or None at the end of the input."""
        if self._ahead is not None:
            (ahead,), self._ahead = self._ahead, None
            if isinstance(ahead, BaseException):
                raise ahead
            return ahead
        return next(self.frames, None)

    def decode_ahead(self):
        """Decode the next frame now (:meth:`next_frame` returns it); the frame, or None."""
        try:
            self._ahead = (next(self.frames, None),)
        except Exception as e:  # raised by next_frame, in the step that needs the frame
            self._ahead = (e,)
            return None
        return self._ahead[0]

    def close(self) -> None:
        """Stop decoding and release the input's video file (at once, even before its first frame), and the tracker,
        whose detector and validator are this stream's methods: without that reference cycle the stream and its
        AU state (~27 MB of running-median histograms, on the device) go when its outcome is out, not at a later
        garbage collection (the command runs it rarely: gpuau._gc); safe to call more than once."""
        close = getattr(self.frames, "close", None)
        if close is not None:
            close()
        if self.source is not None:
            self.source.close()
        self.tracker = None

    def abort(self) -> None:
        """Release the input and drop the outputs (a failed stream)."""
        self.close()
        self.output.abort()
        if self.recorder is not None:
            self.recorder.abort()


@dataclass
class _Item:
    """One stream's frame in the current step and what the stages made of it."""

    stream: _Stream
    frame: object
    result: object = None
    fits: dict = field(default_factory=dict)  # FaceTracker.track's fit / box_fit


STATS = ("steps", "frames", "detect_batches", "detections_batched", "detections_alone", "validate_batches",
         "validations_batched", "validations_alone", "steps_staged_ahead")


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
    quality, detect_every, timestamps, orientation, au_static, camera, write_hog, write_aligned, columns
        As for :class:`gpuau.pipeline.Analyzer` (the outputs are that Analyzer's; a :class:`Job`'s ``intrinsics``
        replace ``camera`` for its video; the ``.hog`` file and aligned faces are written beside a job's output).
    decode : {"opencv", "nvdec"}
        How video files are decoded: OpenCV (FFmpeg) on the CPU, as the Analyzer and OpenFace do; or
        NVDEC on the engine's GPU when the device is CUDA and ``PyNvVideoCodec`` is installed
        (:mod:`gpuau.video.nvdec`; pixel values may differ slightly from OpenCV's), else OpenCV with a
        log line (``gpuau analyze --decode``).

    Attributes
    ----------
    analyzer : Analyzer
        The settings and the loaded models (CLNF, MTCNN, validator) the engine runs with.
    stats : dict[str, int]
        Counts since construction: ``steps``, ``frames``; ``detect_batches`` (``detect_batch`` calls),
        ``detections_batched`` (frames detected in them) and ``detections_alone`` (a tracker's
        detection no batch foresaw); the same three for validation (``validate_batches``,
        ``validations_batched``, ``validations_alone``); ``steps_staged_ahead`` (steps whose frames were
        copied to the device during the step before).

    Examples
    --------
    >>> eng = Engine("cuda")                                          # doctest: +SKIP
    >>> jobs = [Job(p, f"out/{Path(p).stem}.csv") for p in videos]    # doctest: +SKIP
    >>> for outcome in eng.run(jobs):                                 # doctest: +SKIP
    ...     print(outcome.input, outcome.status, outcome.frames)
    """

    def __init__(self, device: "str | Backend" = "auto", *, models: "str | os.PathLike | None" = None,
                 streams: "int | None" = None, chunk: int = 256, quality="exact", detect_every: "int | None" = None,
                 timestamps: str = "openface", decode: str = "opencv", orientation: str = "openface",
                 au_static: bool = False, camera=None, write_hog: bool = False, write_aligned=False, columns=None):
        analyzer = Analyzer(device, models=models, quality=quality, detect_every=detect_every, timestamps=timestamps,
                            orientation=orientation, au_static=au_static, camera=camera, write_hog=write_hog,
                            write_aligned=write_aligned, columns=columns)
        self._setup(analyzer, streams, chunk, decode)

    @classmethod
    def from_analyzer(cls, analyzer: Analyzer, *, streams: "int | None" = None, chunk: int = 256,
                      decode: str = "opencv") -> "Engine":
        """An engine with ``analyzer``'s device, models folder, ``quality``, ``detect_every``, ``timestamps``,
        ``orientation``, ``au_static``, ``camera``, ``columns`` and face outputs (``write_hog``, ``write_aligned``),
        sharing its
        loaded models (nothing is loaded again).

        Raises
        ------
        ValueError
            ``analyzer.multi_face`` is set (the engine tracks one face per video).
        """
        if analyzer.multi_face:
            raise ValueError("the engine tracks one face per video: use an Analyzer without multi_face")
        engine = cls.__new__(cls)
        engine._setup(analyzer, streams, chunk, decode)
        return engine

    def _setup(self, analyzer: Analyzer, streams: "int | None", chunk: int, decode: str) -> None:
        if decode not in DECODERS:
            raise ValueError(f"decode={decode!r}: use one of {DECODERS}")
        self.decode = decode
        self.analyzer = analyzer
        self.backend = analyzer.backend
        self.models = analyzer.models
        self.detect_every = analyzer.detect_every
        self.timestamps = analyzer.timestamps
        self.orientation = analyzer.orientation
        self.streams = auto_streams(self.backend) if streams is None else int(streams)
        if self.streams < 1:
            raise ValueError(f"streams={streams}: need at least 1")
        self.chunk = int(chunk)
        self.clnf, self.mtcnn, self.validator = analyzer.loaded_models()
        self.staging = FrameStaging(transfers_for(self.backend))
        self.stats = dict.fromkeys(STATS, 0)
        self._unbatched_stages: set = set()
        self._decoding = self.streams  # videos decoded at once (run() knows when fewer jobs were given)

    # -- jobs ------------------------------------------------------------------------------------
    def _open(self, job: Job, fmt: str, on_open: "Callable | None" = None) -> _Stream:
        """The stream of ``job``, its output created; ``on_open(job, source)`` then gives its progress callable."""
        from gpuau.video import InputError, decoder_threads, open_source

        camera = self.analyzer.camera_for(job.intrinsics)
        if not isinstance(job.input, (str, os.PathLike)):
            s = _Stream(job, iter(job.input), self, fmt, camera)
        else:
            # the cores beyond the analysis shared by the videos decoded at once; one alone: open_source's choice
            # for its frame size
            threads = decoder_threads(self._decoding) if self._decoding > 1 else None
            source = open_source(job.input, timestamps=self.timestamps, threads=threads, orientation=self.orientation)
            try:
                if source.kind == "image":
                    raise InputError(source.path, "a single image, not a video",
                                     "analyse images with Analyzer.analyze_image")
                frames = self._nvdec(source) if self.decode == "nvdec" else None
                s = _Stream(job, iter(source) if frames is None else frames, self, fmt, camera, source.file_names,
                            source)
            except BaseException:  # the output cannot be written, ...: release the video at once
                source.close()
                raise
        try:
            s.progress = on_open(job, s.source) if on_open else None
        except BaseException:
            s.abort()
            raise
        return s

    def _nvdec(self, source) -> "Iterator | None":
        """NVDEC's frames of a video source (its OpenCV capture then closed), or None (logged)."""
        from gpuau.video.nvdec import nvdec_frames

        if source.kind != "video" or self.timestamps != "openface":
            log.info("%s: decoding with OpenCV (NVDEC decodes video files with OpenFace's timestamps)", source.path)
            return None
        if source.turn:
            log.info("%s: decoding with OpenCV (NVDEC does not turn the frames of a rotated video)", source.path)
            return None
        if not self.backend.is_gpu:
            log.info("%s: decoding with OpenCV (NVDEC decodes for a CUDA device, not %s)", source.path,
                     self.backend.name)
            return None
        frames = nvdec_frames(source.path, source.fps, self.backend.device_id)
        if frames is not None:
            source.close()
        return frames

    def _finish(self, s: _Stream) -> Outcome:
        from gpuau.video import no_face_notes

        s.close()
        columns = close_table(s.output, s.job.label, s.frames_done, s.recorder, s.aus.finish if s.aus else dict)
        source = s.source  # None for frames given in memory
        notes = [] if source is None else source.decoding_notes(s.frames_done)
        warnings = [f"{s.job.label}: {n}" for n in no_face_notes(s.frames_done, s.faces) + notes]  # as analyze_video
        result = None if columns is None else Result(columns, source=str(s.job.label), frames_decoded=s.frames_done,
                                                     elapsed=s.elapsed, warnings=warnings)
        return Outcome(s.job.label, s.job.output, "done", reason="; ".join(notes), frames=s.frames_done, faces=s.faces,
                       elapsed=s.elapsed, result=result)

    def _fail(self, s: "_Stream | None", job: Job, error: BaseException) -> Outcome:
        _signals.reraise(error)
        if s is not None:
            s.abort()
        return failed_outcome(job.label, job.output, error)

    def _unbatched(self, stage: str, error: Exception) -> None:
        """A batched ``stage`` raised ``error``: an interrupt stops the run (:func:`gpuau._signals.reraise`); anything
        else is logged, once per stage of this engine (with its traceback at debug level), and the stage's streams do
        it alone, where one stream's failure fails that stream only."""
        _signals.reraise(error)
        if stage not in self._unbatched_stages:
            self._unbatched_stages.add(stage)
            log.warning("the batched %s failed (%s: %s); its streams do it alone", stage, type(error).__name__, error)
            log.debug("the batched %s failed", stage, exc_info=error)

    def run(self, jobs: Iterable, *, format: str = "csv", progress: "Callable[[int], None] | None" = None,
            on_open: "Callable | None" = None) -> Iterator[Outcome]:
        """Analyse every job, ``B`` streams at a time; yield each job's outcome as its stream ends.

        Parameters
        ----------
        jobs : iterable of Job or (input, output) pairs
            A sized collection (a list) tells how many videos are decoded at once when there are fewer than
            streams, so that each gets its share of FFmpeg threads (:func:`gpuau.video.decoder_threads`); a
            single video then decodes as :func:`gpuau.video.open_source` chooses for its frame size.
        format : {"csv", "parquet"}
            Format of the jobs' output files.
        progress : callable, optional
            Called with the number of frames done so far (all streams) after each step.
        on_open : callable, optional
            ``on_open(job, source)`` once a job's input is open and its output created (``source``: the
            :class:`~gpuau.video.VideoSource` of a path input, e.g. to size a progress bar from its
            ``frame_count``; None for frame inputs).  If it returns a callable, that is called with the
            job's frames done so far after each of its steps.

        Yields
        ------
        Outcome
            ``"done"`` (``result`` holds the table of a job without output file; ``reason`` notes a
            container announcing another frame count) or ``"failed"`` with the reason; ``elapsed``
            is the stream's share of the engine's steps, so the elapsed times of all outcomes add up
            to the engine's time.
        """
        format = output_format(None, format)  # one of FORMATS; None: csv, as for a path without a Parquet ending
        self._decoding = min(self.streams, len(jobs)) if isinstance(jobs, Sized) else self.streams
        queue = (j if isinstance(j, Job) else Job(*j) for j in jobs)
        active: list = []
        done = 0
        try:
            while True:
                _signals.check()
                self.backend.use()
                items, ended = self._gather(active, queue, format, on_open)
                active = [it.stream for it in items]
                yield from ended
                if not items:
                    return
                t0 = time.perf_counter()
                self.backend.use()  # again: the caller may have run another GPU's analysis while it had `ended`
                yield from self._step(items)
                share = (time.perf_counter() - t0) / len(items)
                for it in items:
                    it.stream.elapsed += share
                active = [it.stream for it in items if it.result is not None]
                for s in active:
                    if s.progress:
                        s.progress(s.frames_done)
                done += len(items)
                self.stats["steps"] += 1
                self.stats["frames"] += len(items)
                if progress:
                    progress(done)
        finally:  # closed early (or an error outside any stream): drop the unfinished outputs
            for s in active:
                s.abort()

    def _gather(self, active: list, queue: Iterator, fmt: str, on_open=None) -> "tuple[list, list]":
        """Next frame of each active stream, streams that ended replaced from ``queue`` (opened with
        ``on_open``, see :meth:`run`).

        Returns the step's items and the outcomes of the streams that ended (finished, failed to open,
        or failed decoding).
        """
        items, ended = [], []
        pending = list(active)
        opened = []  # streams opened here and not ended: run() drops only the active ones when interrupted
        try:
            while pending or len(items) < self.streams:
                if pending:
                    s, job = pending.pop(0), None
                else:
                    job = next(queue, None)
                    if job is None:
                        break
                    try:
                        s = self._open(job, fmt, on_open)
                    except Exception as e:
                        ended.append(self._fail(None, job, e))
                        continue
                    opened.append(s)
                try:
                    frame = s.next_frame()
                    if frame is None:
                        ended.append(self._finish(s))
                    else:
                        items.append(_Item(s, frame))
                        continue
                except Exception as e:
                    ended.append(self._fail(s, s.job, e))
                if s in opened:
                    opened.remove(s)
        except BaseException:  # Ctrl-C, SIGTERM: no temporary output left behind
            for s in opened:
                s.abort()
            raise
        return items, ended

    # -- one step --------------------------------------------------------------------------------
    def _step(self, items: list) -> Iterator[Outcome]:
        """Detection, landmarks, AUs and rows of one frame per stream; outcomes of streams that failed.

        A failed stream's item keeps ``result = None`` and leaves the engine.
        """
        for it in items:  # what a step's batches leave for the trackers is for this frame only
            it.stream.prefetched, it.stream.certainties = None, []
        frames = [it.frame for it in items]
        unstaged: dict = {}
        if self.staging.covers(frames):
            self.stats["steps_staged_ahead"] += 1
        else:
            unstaged = self.staging.stage(frames)
        failed = [(it, unstaged[it.frame.gray.shape]) for it in items if it.frame.gray.shape in unstaged]
        items = [it for it in items if it.frame.gray.shape not in unstaged]  # (the failed ones' results go below)
        frames = [it.frame for it in items]
        self.detect_faces(items)
        failed += self.track_faces(items)
        self._decode_ahead([it for it in items if it.result is not None])
        failed += self.add_aus([it for it in items if it.result is not None and it.stream.aus is not None])
        self.staging.release(frames)
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

    def _decode_ahead(self, items: list) -> None:
        """Decode each stream's next frame and start copying them to the device (while the AU stage of
        this step computes)."""
        frames = [f for f in (it.stream.decode_ahead() for it in items) if f is not None]
        if frames:
            self.staging.stage(frames)  # a size that fails here is staged again by its step, which fails its streams

    def detect_faces(self, items: list) -> None:
        """MTCNN on the frames of every stream whose tracker detects before fitting, in one batch."""
        self._detect([it for it in items if it.stream.tracker.detects_before_fit()])

    def _detect(self, items: list) -> None:
        """MTCNN on the items' frames in one batch: each stream's tracker then finds its box there."""
        from gpuau.detect import select_box

        if not items:
            return
        try:
            detections = self.mtcnn.detect_batch([it.frame.image for it in items], staged=self._staged(items))
        except Exception as e:
            self._unbatched("face detection", e)
            return
        for it, d in zip(items, detections):
            it.stream.prefetched = (it.frame.image, select_box(d))
        self.stats["detect_batches"] += 1
        self.stats["detections_batched"] += len(items)

    def _staged(self, items: list, bgr: bool = True) -> list:
        """``(device stack, row)`` of each item's frame in the staging: its BGR pixels
        (:meth:`FrameStaging.bgr`) or its float32 grey levels (:meth:`FrameStaging.images`)."""
        groups: dict = {}
        for i, it in enumerate(items):
            groups.setdefault(it.frame.gray.shape, []).append(i)
        staged: list = [None] * len(items)
        for idx in groups.values():
            frames = [items[i].frame for i in idx]
            stack, rows = self.staging.bgr(frames) if bgr else self.staging.images(frames)
            for i, row in zip(idx, rows):
                staged[i] = stack, int(row)
        return staged

    def track_faces(self, items: list) -> list:
        """Landmarks of every stream's frame (``it.result`` = :class:`~gpuau.landmarks.tracker.LandmarkResult`).

        The tracking fits (from each tracker's
        :meth:`~gpuau.landmarks.tracker.FaceTracker.tracking_request`) and the rotation hypotheses of
        each box detected before them are fitted in one batch per frame size and validated in one
        call; then the streams that re-detect after their fit (:meth:`FaceTracker.detects_after_fit`) are
        detected, fitted and validated in batches, and each tracker finishes its step with its fits.

        Returns
        -------
        list of (item, exception)
            Streams whose tracking failed.
        """
        requests = []
        for it in items:
            try:
                request = it.stream.tracker.tracking_request()
            except Exception as e:  # the stream's own track call below reports it
                _signals.reraise(e)
                continue
            if request is not None:
                g, p, w = request
                requests.append((it, "fit", np.asarray(g)[None], np.asarray(p)[None], np.asarray(w)[None], None))
            elif it.stream.prefetched is not None and it.stream.prefetched[1] is not None:
                requests.append(self._box_request(it, it.stream.tracker.likelihood))
        self._fit(requests)
        self._redetect([it for it in items if "fit" in it.fits])
        failed = []
        for it in items:
            try:
                it.result = it.stream.tracker.track(it.frame.image, it.frame.gray, **it.fits)
            except Exception as e:
                failed.append((it, e))
        return failed + self.camera_space([it for it in items if it.result is not None])

    def camera_space(self, items: list) -> list:
        """Fill the head pose, 3D landmarks and gaze of every item's landmark result at once
        (:func:`~gpuau.landmarks.tracker.camera_space_outputs`: one ``solve_pnp`` launch on the device).

        Returns
        -------
        list of (item, exception)
            Streams whose pose failed (the batch is retried face by face to find them).
        """
        from gpuau.landmarks.tracker import camera_space_outputs

        try:
            camera_space_outputs(self.clnf, [it.result for it in items],
                                 [it.stream.tracker.intrinsics for it in items], self.backend)
            return []
        except Exception as e:
            self._unbatched("head pose", e)
            failed = []
            for it in items:
                try:
                    camera_space_outputs(self.clnf, [it.result], [it.stream.tracker.intrinsics], self.backend)
                except Exception as e:
                    failed.append((it, e))
            return failed

    def _box_request(self, it: _Item, previous_likelihood: float) -> tuple:
        """The rotation hypotheses of the item's detected box, as a :meth:`_fit` request."""
        from gpuau.landmarks.tracker import box_hypotheses

        g = box_hypotheses(self.clnf, it.stream.prefetched[1])
        zeros = np.zeros((len(g), self.clnf.model.pdm.n_modes), np.float32)
        init = np.tile(self.clnf.parameters.window_sizes_init, (len(g), 1))
        return it, "box_fit", g, zeros, init, previous_likelihood

    def _fit(self, requests: list) -> None:
        """Fit the faces of ``requests`` in one :func:`~gpuau.landmarks.clnf.detect_landmarks_batch` per
        frame size, keep each item's fit (the best hypothesis of a box: ``best_hypothesis``) in
        ``item.fits`` and validate those the tracker validates in one call.

        Each request is ``(item, "fit" | "box_fit", g (k, 6), p (k, m), windows (k, S), previous
        likelihood)`` (the likelihood for ``best_hypothesis``; None for a tracking fit).  A group that
        fails is left to each tracker, so that a failure stays its own.
        """
        from gpuau.landmarks.clnf import detect_landmarks_batch
        from gpuau.landmarks.tracker import best_hypothesis

        groups: dict = {}
        for request in requests:
            groups.setdefault(request[0].frame.gray.shape, []).append(request)
        for group in groups.values():
            try:
                images, rows = self.staging.images([r[0].frame for r in group])
                index = np.concatenate([np.full(len(r[2]), row) for r, row in zip(group, rows)])
                g, p, w = (np.concatenate([r[j] for r in group]) for j in (2, 3, 4))
                results = detect_landmarks_batch(self.clnf, images, index, g, p, w, backend=self.backend)
            except Exception as e:
                self._unbatched("landmark fit", e)
                continue
            start = 0
            for it, kind, g, _, _, likelihood in group:
                faces, start = results[start:start + len(g)], start + len(g)
                it.fits[kind] = faces[0] if kind == "fit" else best_hypothesis(faces, likelihood)
        self._validate([(r[0], r[0].fits[r[1]]) for r in requests if r[1] in r[0].fits])

    def _validate(self, fits: list) -> None:
        """The validator's certainty of each ``(item, FitResult)`` the tracker validates (a converged
        fit), in one :meth:`~gpuau.landmarks.validator.DetectionValidator.check_batch`."""
        if not self.clnf.parameters.validate_detections:
            return
        fits = [(it, res) for it, res in fits if res.success]
        if not fits:
            return
        try:
            certainties = self.validator.check_batch([it.frame.gray for it, _ in fits], [r.landmarks for _, r in fits],
                                                     [r.params_global[1:4] for _, r in fits],
                                                     staged=self._staged([it for it, _ in fits], bgr=False))
        except Exception as e:
            self._unbatched("validation", e)
            return
        for (it, res), c in zip(fits, certainties):
            it.stream.certainties.append((res.landmarks, float(c)))
        self.stats["validate_batches"] += 1
        self.stats["validations_batched"] += len(fits)

    def _redetect(self, items: list) -> None:
        """Detection, hypotheses and validation, in batches, for the streams whose tracker detects
        after this frame's tracking fit (``items`` have one)."""
        from gpuau.landmarks.validator import detection_outcome

        p = self.clnf.parameters
        redetect = []
        for it in items:
            fit, s = it.fits["fit"], it.stream
            certainty = s.batched_certainty(fit.landmarks)
            if p.validate_detections and fit.success and certainty is None:
                continue  # not validated in the batch: the tracker's own step decides
            success, _ = detection_outcome(fit.success, certainty, validate=p.validate_detections,
                                           boundary=p.validation_boundary)
            if s.tracker.detects_after_fit(success):
                redetect.append(it)
        self._detect([it for it in redetect if it.stream.prefetched is None])
        boxes = [it for it in redetect if it.stream.prefetched is not None and it.stream.prefetched[1] is not None]
        self._fit([self._box_request(it, it.stream.tracker.likelihood if it.fits["fit"].likelihood is None
                                     else it.fits["fit"].likelihood) for it in boxes])

    def add_aus(self, items: list) -> list:
        """FHOG and geometry of every tracked face in one batch per frame size, then the sequential AU
        step of all streams at once (:func:`gpuau.au.analyzer.add_features_batch`: running medians,
        predictions and history on the backend; only each stream's filled 4096-frame history block comes back
        to the host).

        Frames without a tracked face get the zero descriptors ``AUAnalyzer.add_frame`` uses.  Streams that record
        their FHOG and aligned faces (:class:`~gpuau.io.FaceRecorder`) are given them, read back in one copy.

        Returns
        -------
        list of (item, exception)
            Streams whose AU computation failed.
        """
        from gpuau.au.analyzer import HOG_SIZE, add_features_batch, untracked_features

        failed = []
        if not items:
            return failed
        xp = self.backend.xp
        n_geometry = items[0].stream.aus.models.weights.shape[0] - HOG_SIZE
        recording = any(it.stream.recorder is not None for it in items)
        aligned = self.analyzer.write_aligned if recording else None  # the faces the recorders take
        out = untracked_features(xp, len(items), n_geometry, aligned)
        hog, geometry = out[:2]
        groups: dict = {}
        for i, it in enumerate(items):
            if it.result.detection_success:
                groups.setdefault(it.frame.image.shape, []).append(i)
        bad: dict = {}
        for idx in groups.values():
            try:
                rows = xp.asarray(np.asarray(idx))
                for whole, part in zip(out, self._features([items[i] for i in idx], aligned)):
                    whole[rows] = part
            except Exception as e:
                self._unbatched("AU features", e)
                for i in idx:
                    try:
                        for whole, part in zip(out, self._features([items[i]], aligned)):
                            whole[i] = part[0]
                    except Exception as e:
                        bad[i] = e
        if recording:
            recorded = [(i, it) for i, it in enumerate(items) if i not in bad and it.stream.recorder is not None]
            bad.update(self._record(recorded, hog, out[2] if aligned else None))
        failed = [(items[i], e) for i, e in bad.items()]
        good = [i for i in range(len(items)) if i not in bad]
        rows = xp.asarray(np.asarray(good, np.int64))
        try:
            add_features_batch([items[i].stream.aus for i in good], hog[rows], geometry[rows],
                               [items[i].result.detection_success for i in good],
                               [items[i].frame.timestamp for i in good])
        except Exception as e:  # the streams' AU state advanced together: none of them can go on
            failed += [(items[i], e) for i in good]
        return failed

    def _features(self, items: list, aligned=None) -> tuple:
        """:func:`~gpuau.au.analyzer.face_features` of the tracked faces of same-sized frames, read from
        their staged device frames (with ``aligned``, a :class:`~gpuau.io.AlignedFaces`, those faces too)."""
        from gpuau.au.analyzer import face_features

        aus = items[0].stream.aus
        images, rows = self.staging.bgr([it.frame for it in items])
        landmarks = np.stack([it.result.landmarks for it in items]).astype(np.float32)
        return face_features(images, landmarks, aus.pdm, aus.triangulation, self.backend, image_index=rows,
                             aligned=aligned)

    def _record(self, recorded: list, hog, faces) -> dict:
        """Hand each ``(index, item)``'s FHOG and aligned face (black where tracking failed) to its stream's
        :class:`~gpuau.io.FaceRecorder`, read back in one copy each; the ``{index: exception}`` of the streams whose
        recorder failed (a full disk: that stream fails, as when its table cannot be written)."""
        if not recorded:
            return {}
        rows = self.backend.xp.asarray(np.asarray([i for i, _ in recorded]))
        hog = self.backend.asnumpy(hog[rows])
        faces = None if faces is None else self.backend.asnumpy(faces[rows])
        bad = {}
        for k, (i, it) in enumerate(recorded):
            try:
                it.stream.recorder.add(hog[k:k + 1], None if faces is None else faces[k:k + 1],
                                       [it.result.success])  # DetectLandmarksInVideo's, as FeatureExtraction's
            except Exception as e:
                bad[i] = e
        return bad
