"""Decoding of videos, images and image folders into :class:`Frame` objects."""
from __future__ import annotations

import itertools
import math
import os
import queue
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from gpuau import _signals

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".jp2", ".pbm",
                    ".pgm", ".ppm", ".pnm", ".sr", ".ras", ".hdr", ".pic")
"""The endings of the files analysed as one image (FaceLandmarkImg), any case: those OpenCV's ``imread`` reads (a
``.jfif`` went down the video path, its pixels FFmpeg's)."""
SEQUENCE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
"""The endings of the images ``SequenceCapture`` reads from an image folder, compared as written (``-fdir`` skips a
``.JPG``, a ``.tif``): an image folder is analysed as those files, in byte order of their names, as OpenFace sorts
them; its other images only when it holds none of these (:func:`open_source`)."""
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".wmv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp", ".mts",
                    ".m2ts", ".ts", ".mxf", ".ogv", ".asf")

QUEUE_BYTES = 40 << 20
"""Pixels that a queue of frames between two of the pipeline's threads holds at most (the decoder's read-ahead: 8
frames up to 1280x720, 5 at 1920x1080, 2 at 3840x2160; the AU thread's backlog: 45 of 640x480, 15 of 1280x720, 6 of
1920x1080, 2 of 3840x2160; :func:`queue_depth`).  With 8-frame queues a 3840x2160 video peaked at 980 MB, with 2-frame
ones at 770 MB."""


def queue_depth(frame_bytes: int, most: int = 8) -> int:
    """Frames of ``frame_bytes`` bytes a queue between two threads holds: within :data:`QUEUE_BYTES`, at most
    ``most``, at least 2 (one being produced while one is consumed)."""
    return max(2, min(most, QUEUE_BYTES // max(1, frame_bytes)))


ANALYSIS_CORES = 2
"""Cores the analysis of one video keeps busy on the CPU (its main and helper threads; the AU stage shares them)."""


LARGE_FRAME = 1280 * 720
"""Pixels from which a video decoded alone gets at least two FFmpeg threads (:func:`decoder_threads`)."""


def decoder_threads(videos: int = 1, pixels: int = 0) -> int:
    """FFmpeg decoding threads for each of ``videos`` videos decoded at once: the cores this process may run
    on (its CPU affinity, at most ``OMP_NUM_THREADS`` when set, as Ray sets it to a worker's CPUs) beyond
    :data:`ANALYSIS_CORES`, shared among the videos, at least 1; at least 2 for a video decoded alone whose
    frames have ``pixels`` of :data:`LARGE_FRAME` or more.

    Each video already decodes on its own thread beside the analysis (the engine decodes its streams side by
    side), so codec threads only pay on cores the analysis leaves idle, where a 4K or HEVC video would
    otherwise be decode-bound; on 2 cores FFmpeg's default (one thread per core) took 0.76 ms of CPU per
    default.wmv frame and 0.5-0.6 per 2015-10-15-15-14.avi frame from the analysis, one thread 0.6 and 0.3,
    at the same decoding speed.  A large frame can cost more to decode than to analyse, and then a second
    thread uses the core the analysis leaves idle while it waits: 2015-10-15-15-14.avi enlarged to 1280x960
    in lossless FFV1 decodes in 32.6 ms a frame on one thread, 20.7 on two, and was analysed (``--quality
    exact``, in process) in 9.1 s against 7.1; the same clip in H.264 (4.1 ms a frame on one thread) took
    3.28 s either way (2026-12-06).  The frames are the same whatever the count.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = os.environ.get("OMP_NUM_THREADS", "")
    if limit.isdigit() and int(limit) > 0:
        cores = min(cores, int(limit))
    threads = (cores - ANALYSIS_CORES) // max(1, videos)
    if videos <= 1 and pixels >= LARGE_FRAME:
        threads = max(threads, min(cores, 2))
    return max(1, threads)


class InputError(RuntimeError):
    """An input cannot be read; the message names the file, the reason and the fix."""

    def __init__(self, path, reason: str, fix: str = ""):
        self.path = str(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"{path}: {self.explanation}")

    @property
    def explanation(self) -> str:
        """The reason, with the fix in brackets when there is one (the message without the path)."""
        return f"{self.reason} ({self.fix})" if self.fix else self.reason

    def __reduce__(self):  # rebuilt from its fields where it crosses a process (concurrent.futures, Ray)
        return type(self), (self.path, self.reason, self.fix)


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes
    ----------
    index : int
        0-based position in the source (OpenFace's ``frame`` column is ``index + 1``).
    timestamp : float
        Seconds, ``index * (1.0 / fps)`` as OpenFace computes it (0 for image folders).
    image : ndarray, shape (H, W, 3), uint8
        BGR frame.
    gray : ndarray, shape (H, W), uint8
        Grayscale frame as OpenFace's ``ConvertToGrayscale_8bit``.
    file : str or None
        Source file of this frame for image folders and single images.
    """

    index: int
    timestamp: float
    image: np.ndarray
    gray: np.ndarray
    file: "str | None" = None


def to_bgr8(img: np.ndarray) -> np.ndarray:
    """Any decoded image (gray/BGR/BGRA, 8- or 16-bit) as 8-bit BGR.

    16-bit values keep their high byte (``v >> 8``), which is what ``cv::imread(file, IMREAD_COLOR)`` gives
    OpenFace for a 16-bit image file, so an array and the same image read from a file give the same frame
    (10- or 12-bit samples in 16-bit words come out dark: scale them to the full 16 bits first).
    """
    import cv2

    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3, 4))) or 0 in img.shape:
        raise ValueError(f"an image of shape {img.shape}: expected (height, width) grey or (height, width, 1 | 3 | "
                         f"4) grey, BGR or BGRA pixels")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        hint = (" (floats from 0 to 1: (img * 255).round().astype(np.uint8))" if img.dtype.kind == "f" else "")
        raise ValueError(f"unsupported image dtype {img.dtype}: expected uint8 or uint16{hint}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img)


IN_MEMORY = "<frames>"
"""The name of frames handed over in memory (:func:`array_frames`) in results, outcomes and messages."""


def array_frames(images: Iterable, fps: float) -> Iterator[Frame]:
    """Frames of images already in memory (anything :func:`to_bgr8` takes, all of one size), numbered from 0 and
    timestamped ``index * (1.0 / fps)`` as OpenFace does (0 when ``fps`` is 0).  Each frame is a copy: a caller may
    reuse its arrays as soon as the next frame is asked for.

    Raises
    ------
    ValueError
        ``fps`` is not a finite number >= 0; ``images`` is one image (an array (height, width) or (height, width,
        1 | 3 | 4)), not frames; or a frame's size differs from the first's (the camera, and so the pose, is the
        first frame's).
    InputError
        ``images`` holds no frame (raised once iterated).
    """
    if isinstance(fps, (str, bytes)) or fps is None or not math.isfinite(float(fps)) or float(fps) < 0:
        raise ValueError(f"fps={fps!r}: need the frame rate, a finite number >= 0 (0: every timestamp 0)")
    fps = float(fps)
    if isinstance(images, np.ndarray) and (images.ndim == 2 or (images.ndim == 3 and images.shape[2] in (1, 3, 4))):
        raise ValueError(f"an array of shape {images.shape} is one image, not frames: pass [image], or use "
                         f"analyze_image")

    def frames() -> Iterator[Frame]:
        size = None
        for i, img in enumerate(images):
            img = np.asarray(img)
            try:
                bgr = to_bgr8(img)
            except ValueError as e:
                raise ValueError(f"frame {i}: {e}") from None
            if np.may_share_memory(bgr, img):
                # the caller's own array: its frame is read again after the next one is taken (the AU stage works on
                # a thread of its own), and a caller may decode every frame into one buffer (cv2's cap.read(buf))
                bgr = bgr.copy()
            if size is None:
                size = bgr.shape
            elif bgr.shape != size:
                raise ValueError(f"frame {i} is {bgr.shape[1]}x{bgr.shape[0]}, the first {size[1]}x{size[0]}: the "
                                 f"frames of one video share a size (analyse each size apart)")
            yield Frame(i, i * (1.0 / fps) if fps else 0.0, bgr, to_gray8(bgr))
        if size is None:
            raise InputError(IN_MEMORY, "no frames given", "pass at least one frame")

    return frames()


def decoding_notes(frames: int, announced: int, rotation: int = 0, turn: int = 0, counted: bool = True,
                   tolerance: int = 0) -> list:
    """What to tell about a finished video: another number of frames decoded than the container announces
    (``announced``; 0: unknown; ``counted``: the container stores its frame count, else OpenCV estimated it from the
    duration and the frame rate, which a variable frame rate makes wrong, and an estimate within ``tolerance`` frames
    is no news), and how a video whose container asks for a clockwise turn of ``rotation`` degrees was turned
    (``turn``; see :data:`ORIENTATIONS`)."""
    notes = []
    if announced and abs(announced - frames) > (0 if counted else tolerance):
        notes.append(f"decoded {frames} of the {announced} frames the container announces" if counted else
                     f"decoded {frames} frames where the container's duration and frame rate suggest {announced} (it "
                     f"stores no frame count)")
    if rotation:
        if turn == rotation == 180:  # either way round: --orientation openface and display turn it alike
            how = "analysed upright, as OpenFace's build with OpenCV 4.6 turns it"
        elif turn == rotation:
            how = "analysed upright (--orientation display; OpenFace's build with OpenCV 4.6 turns it the other way)"
        elif turn == 0:
            how = "analysed as stored, not upright (--orientation stored)"
        else:
            how = (f"analysed turned {turn} degrees clockwise as OpenFace's build with OpenCV 4.6 turns it, not upright "
                   "(--orientation display analyses it upright)")
        notes.append(f"the container asks for a {rotation} degree clockwise turn: {how}")
    return notes


def no_face_notes(frames: int, faces: int) -> list:
    """The warning of a video or image folder whose ``frames`` frames were analysed with a face in ``faces`` of them:
    none when a face was found (or nothing decoded)."""
    return [f"no face found in any of its {frames} frames"] if faces == 0 and frames > 0 else []


def serial_opencv() -> None:
    """Make OpenCV run its functions on the calling thread (``cv2.setNumThreads(1)``, process-wide).

    For processes gpuau owns (the ``gpuau`` command, its Ray workers); a library caller may call it
    too, but gpuau does not change OpenCV's global setting on its own.  The analysis calls OpenCV for
    small per-frame work (:func:`to_gray8` on the decoding thread), and after each parallel call
    OpenCV's pool threads spin (``sched_yield``) for a while: on 2 cores that took 0.45 ms of CPU per
    default.wmv frame from the analysis threads.  Results are the same either way.
    """
    import cv2

    cv2.setNumThreads(1)


def to_gray8(bgr8: np.ndarray) -> np.ndarray:
    """``cv2.COLOR_BGR2GRAY`` of an 8-bit BGR frame (OpenFace's grayscale frame for CLNF)."""
    import cv2

    return cv2.cvtColor(bgr8, cv2.COLOR_BGR2GRAY)


def camera_intrinsics(width: int, height: int, camera=None) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` of frames of ``width`` x ``height``: ``camera``'s values where given, OpenFace's guess
    where not.

    Port of ``SequenceCapture::SetCameraIntrinsics`` (SequenceCapture.cpp): without ``-fx``, the focal length
    ``500 * size / (640, 480)`` averaged over both axes; without ``-cx``, the optical centre at the image centre
    (computed in float32 as OpenFace does).

    Parameters
    ----------
    width, height : int
    camera : (fx, fy, cx, cy), optional
        A camera's known values (FeatureExtraction's ``-fx -fy -cx -cy``), each pair ``fx, fy`` and ``cx, cy``
        given or None together.

    Raises
    ------
    ValueError
        Only one value of a pair given (OpenFace would take -1 for the other).
    """
    fx_given, fy_given, cx_given, cy_given = check_camera(camera)
    f32 = np.float32
    if fx_given is None:
        fx = f32(500.0) * (f32(width) / f32(640.0))
        fy = f32(500.0) * (f32(height) / f32(480.0))
        fx = fy = (fx + fy) / f32(2.0)
    else:
        fx, fy = f32(fx_given), f32(fy_given)
    if cx_given is None:
        cx, cy = f32(width) / f32(2.0), f32(height) / f32(2.0)
    else:
        cx, cy = f32(cx_given), f32(cy_given)
    return float(fx), float(fy), float(cx), float(cy)


def check_camera(camera, name: str = "camera") -> tuple:
    """``camera`` as ``(fx, fy, cx, cy)`` with None for the values to guess (all four for None); ValueError for a
    pair given by half, a focal length that is not positive, or a value that is not a finite number (the message
    calls the argument ``name``)."""
    if camera is None:
        return (None,) * 4
    try:
        values = tuple(None if v is None else float(v) for v in camera)
    except (TypeError, ValueError):  # not a sequence (camera=500), or a value that is no number
        values = ()
    if len(values) != 4:
        raise ValueError(f"{name}={camera!r}: give (fx, fy, cx, cy), None for the values to guess")
    for names, pair in ((("fx", "fy"), values[:2]), (("cx", "cy"), values[2:])):
        if (pair[0] is None) != (pair[1] is None):
            raise ValueError(f"{name}: give {names[0]} and {names[1]} together (got {names[0]}={pair[0]}, "
                             f"{names[1]}={pair[1]})")
    if any(v is not None and not np.isfinite(v) for v in values) or any(v is not None and v <= 0 for v in values[:2]):
        raise ValueError(f"{name}={camera!r}: the focal lengths must be positive and every value a finite number")
    return values


def sequence_files(folder: Path) -> "tuple[list[Path], list[str]]":
    """The images of an image folder, in frame order, and what to tell about them: ``SequenceCapture``'s files
    (:data:`SEQUENCE_EXTENSIONS`, sorted by the bytes of their names: ``img10`` before ``img2``, as OpenFace orders
    them), the others it skips noted; a folder with none of those is analysed as its other images, noted too.  Hidden
    files are left out, noted: the ``._0001.jpg`` macOS writes beside each image on other disks is no image, and
    would fail the folder (OpenFace reads it, and stops there)."""
    try:
        images = sorted((f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()),
                        key=lambda f: os.fsencode(f.name))
    except OSError as e:
        raise InputError(folder, f"folder is not readable ({e.strerror})", "check its permissions") from None
    hidden = [f for f in images if f.name.startswith(".")]
    images = [f for f in images if not f.name.startswith(".")]
    notes = [f"left out {len(hidden)} hidden image file(s) (names starting with '.', as macOS's ._ files): "
             f"{', '.join(f.name for f in hidden[:3])}{', ...' if len(hidden) > 3 else ''}"] if hidden else []
    if not images:
        if any(f.suffix.lower() in VIDEO_EXTENSIONS for f in folder.iterdir()):
            raise InputError(folder, "folder holds videos, not an image sequence",
                             "analyse each video: gpuau analyze FOLDER -o OUTDIR (gpuau.corpus.run_corpus) searches it")
        raise InputError(folder, "folder holds no images", f"expected files ending in {', '.join(IMAGE_EXTENSIONS)}")
    read = [f for f in images if f.suffix in SEQUENCE_EXTENSIONS]
    others = [f for f in images if f.suffix not in SEQUENCE_EXTENSIONS]
    endings = ", ".join(SEQUENCE_EXTENSIONS)
    if not read:
        return others, notes + [f"OpenFace's FeatureExtraction reads none of its images (it takes files ending in "
                                 f"{endings}, as written): analysed its {len(others)} images of other endings"]
    if others:
        return read, notes + [f"skipped {len(others)} image(s) FeatureExtraction skips (not ending in {endings}, as "
                              f"written), as OpenFace does: {', '.join(f.name for f in others[:3])}"
                              f"{', ...' if len(others) > 3 else ''}"]
    return read, notes


def _opencv_can_open(path: Path) -> bool:
    """Whether OpenCV may be handed ``path``'s name: opencv-python crashes (a segmentation fault) on a name that is not
    valid UTF-8, which Python holds as surrogates."""
    try:
        str(path).encode()
    except UnicodeEncodeError:
        return False
    return True


def _read_image(path: Path) -> np.ndarray:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    # OpenFace's ImageCapture / SequenceCapture read, cv::imread(IMREAD_COLOR) with OpenCV 4.6: 8-bit BGR, EXIF
    # orientation applied (not a WebP's, which 4.6 ignores), 16-bit >> 8, grey expanded, alpha dropped.
    flags = cv2.IMREAD_COLOR | (cv2.IMREAD_IGNORE_ORIENTATION if path.suffix.lower() == ".webp" else 0)
    img = cv2.imdecode(data, flags) if data is not None and data.size else None
    if img is None and data is not None and data.size and _opencv_can_open(path):
        img = cv2.imread(str(path), flags)  # a JPEG cut short: imread decodes what it holds, as OpenFace's
    if img is None:
        raise InputError(path, "not a readable image", "check the file is a complete JPEG/PNG/BMP/TIFF")
    return img


class VideoSource:
    """Frames of one input, decoded ahead in a background thread.

    Use :func:`open_source`. Iterating yields :class:`Frame` objects in order; the source can be iterated once.
    :meth:`close` (or a ``with`` block) stops the decoding thread and releases the video file at once,
    whether the frames were read or not.

    Attributes
    ----------
    path : Path
    kind : str
        ``"video"``, ``"image"`` or ``"sequence"`` (a folder of images).
    fps : float
        Container frame rate (30 when the container has none, as OpenFace); 0 for images.
    width, height : int
    frame_count : int
        Frames the container announces (exact for images and folders).
    files : list of Path
        Image files for ``"image"`` and ``"sequence"`` sources.
    rotation : int
        Clockwise turn, in degrees (0, 90, 180 or 270), that the video's container asks for before display
        (phone footage's display matrix); 0 for images.
    turn : int
        Clockwise turn given to each decoded video frame (:data:`ORIENTATIONS`); ``width`` and ``height``
        are the turned frame's.
    """

    def __init__(self, path: Path, kind: str, fps: float, width: int, height: int, frame_count: int,
                 files: "list[Path] | None" = None, capture=None, first: "np.ndarray | None" = None,
                 rotation: int = 0, turn: int = 0, threads: int = 1, notes: "list[str] | None" = None):
        self.path = path
        self.kind = kind
        self.fps = fps
        self.width = width
        self.height = height
        self.frame_count = frame_count
        self.files = files or []
        self.rotation = rotation
        self.turn = turn
        self.threads = threads  # a video's decoding threads
        self.notes = notes or []  # what to tell about the input beyond its decoding (an image folder's files, a cut file)
        self._capture = capture
        self._first = first  # the first image, decoded by open_source for the size: not decoded again
        self.timestamps = "openface"
        self._used = False
        self._decoder: "threading.Thread | None" = None  # the decoding thread, which releases the capture itself
        # the iteration's generator, weakly: its frame refers to this source, and a strong reference back would
        # keep both (and the decoding thread) alive after the caller drops them
        self._frames: "weakref.ref | None" = None

    @property
    def frame_count_stored(self) -> bool:
        """Whether :attr:`frame_count` is a count the container stores (AVI, MP4...) rather than OpenCV's estimate from
        its duration and frame rate (Matroska, WMV, MPEG-TS); asked of PyAV's FFmpeg, True when it cannot say."""
        if self.kind != "video":
            return True
        import av

        try:
            with _open_container(self.path) as container:
                return container.streams.video[0].frames > 0
        except (av.FFmpegError, OSError, IndexError):  # PyAV's FFmpeg cannot read it, or finds no video stream
            return True

    def decoding_notes(self, frames: int) -> list:
        """What to tell about this source once ``frames`` frames were decoded: an image folder's notes on the images
        OpenFace skips (:func:`open_source`), then :func:`decoding_notes` (whether the container stores its
        count is asked only where the counts differ); a count OpenCV estimated is no news within a second's frames
        (changeLighting.wmv's duration suggests 90 frames, and 88 decode, as in OpenFace's table)."""
        counted = self.frame_count == frames or self.frame_count_stored
        return self.notes + decoding_notes(frames, self.frame_count, self.rotation, self.turn, counted,
                                           tolerance=round(self.fps))

    @property
    def file_names(self) -> "list[str] | None":
        """The name of each image of an image folder, in frame order (gpuau's ``file`` column); None for
        videos and single images."""
        return [f.name for f in self.files] if self.kind == "sequence" else None

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop decoding and release the video file; iteration ends. Safe to call more than once."""
        frames = self._frames() if self._frames is not None else None
        if frames is not None:
            frames.close()
        if self._capture is not None and self._decoder is None:  # never read: no thread is inside the decoder
            self._capture.release()
        self._first = None

    def _decode(self) -> Iterator[tuple[np.ndarray, "str | None", float]]:
        if self.kind == "video":
            import cv2

            cap = self._capture
            turn = _ROTATE_FLAGS.get(self.turn)
            try:
                stored = (self.height, self.width) if self.turn in (90, 270) else (self.width, self.height)
                frames = _pyav_frames(self.path, self.threads, stored)
                if frames is not None:  # OpenCV would convert with the stream's own colour matrix
                    cap.release()
                else:
                    frames = _opencv_frames(cap)
                for img, pts in frames:
                    img = to_bgr8(img)
                    yield (img if turn is None else cv2.rotate(img, turn)), None, pts
            finally:
                cap.release()
        else:
            first, self._first = self._first, None
            for i, f in enumerate(self.files):
                yield (first if i == 0 and first is not None else _read_image(f)), str(f), 0.0

    def __iter__(self) -> Iterator[Frame]:
        if self._used:
            raise RuntimeError(f"{self.path}: a VideoSource can be iterated once; open it again")
        self._used = True
        frames = self._generate()
        self._frames = weakref.ref(frames)
        return frames

    def _generate(self) -> Iterator[Frame]:
        # read-ahead: a colour frame and its grey copy each
        q: "queue.Queue" = queue.Queue(maxsize=queue_depth(self.width * self.height * 4))
        stop = threading.Event()
        done = object()

        def work():
            try:
                for item in self._decode():
                    if stop.is_set():
                        return
                    q.put((item[0], to_gray8(item[0]), item[1], item[2]))
                q.put(done)
            except BaseException as e:  # handed to the consumer
                q.put(e)

        t = self._decoder = threading.Thread(target=work, name=f"decode:{self.path.name}", daemon=True)
        t.start()
        index = 0
        first = previous = 0.0  # container times: the first frame's, and the frame before's
        try:
            while True:
                item = q.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                image, gray, file, pts = item
                if self.kind != "video":
                    ts = 0.0
                elif self.timestamps == "container":
                    # FFmpeg has no time (0) for the frames a decoder flushes at the end of a stream that reorders
                    # them (B-frames), whose other times lag by the decoder's delay where the container stores none
                    # (AVI): counted from the first frame, and the flushed ones one frame after the one before
                    if index == 0:
                        first = pts
                    ts = pts - first if index == 0 or pts != 0.0 else previous + 1.0 / self.fps
                    previous = ts
                else:
                    ts = index * (1.0 / self.fps)  # SequenceCapture's arithmetic: index / fps differs in the last bit
                yield Frame(index, ts, image, gray, file)
                index += 1
        finally:
            def stop_and_drain() -> None:
                stop.set()
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass

            # until the thread ends it may be inside the decoder, whose capture must not be released under it
            # (a segmentation fault): a second Ctrl-C here waits for the thread, then goes on
            _signals.wait_through(lambda: not t.is_alive(), stop_and_drain)


TIMESTAMPS = ("openface", "container")

ORIENTATIONS = ("openface", "display", "stored")
"""How a video whose container asks for a rotation (phone footage: a display matrix) is turned before analysis.
``"openface"`` (default): as the OpenFace build that wrote this project's reference CSVs decodes it (OpenCV 4.6 with
FFmpeg 5, Debian 12), whose turn goes the wrong way (opencv/opencv#22088; OpenCV 4.5 and the releases after the fix
turn it right): a quarter-turned video reaches the analysis upside down, and the CSVs are that OpenFace's.
``"display"``: upright, as FFmpeg and players show it.  ``"stored"``: as stored, the rotation ignored.  Videos
without a rotation decode the same in all three.  A 90 or 270 degree turn swaps the frame's width and height, and
so the default camera's centre."""

_ROTATE_FLAGS = {90: 0, 180: 1, 270: 2}
"""``cv2.rotate`` codes of a clockwise turn: ROTATE_90_CLOCKWISE, ROTATE_180, ROTATE_90_COUNTERCLOCKWISE."""


def check_video_options(timestamps: str, orientation: str) -> None:
    """Raise ``ValueError`` for a ``timestamps`` not in :data:`TIMESTAMPS` or an ``orientation`` not in
    :data:`ORIENTATIONS`."""
    for name, value, choices in (("timestamps", timestamps, TIMESTAMPS), ("orientation", orientation, ORIENTATIONS)):
        if value not in choices:
            raise ValueError(f"{name}={value!r}: use one of {choices}")


def _turn(rotation: int, orientation: str) -> int:
    """Clockwise turn of each frame of a video whose container asks for ``rotation`` (clockwise degrees)."""
    return {"openface": (360 - rotation) % 360, "display": rotation, "stored": 0}[orientation]


_BT601 = (2, 5, 6)
"""FFmpeg's colour spaces that swscale converts with BT.601's matrix, OpenCV 4.6's for every video: unspecified,
BT470BG, SMPTE170M."""
_RGB = 0
"""FFmpeg's colour space of RGB streams (no matrix)."""
_FULL_RANGE = 2
"""FFmpeg's ``AVCOL_RANGE_JPEG``: a stream flagged full range."""


def _opencv_frames(cap) -> Iterator[tuple[np.ndarray, float]]:
    import cv2

    while True:
        ok, img = cap.read()
        if not ok or img is None:
            return
        yield img, cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0


def _pyav_frames(path: Path, threads: int, size: "tuple[int, int]") -> "Iterator[tuple[np.ndarray, float]] | None":
    """The frames of a video whose pixels opencv-python would convert otherwise than the OpenFace build of the
    reference CSVs (OpenCV 4.6 with FFmpeg 5) did, decoded by PyAV's FFmpeg with ``threads`` threads and converted as
    that build converts them (:func:`_opencv46_bgr`), at ``size`` (width, height: the video's as OpenCV reports it, to
    which opencv-python scales the frames of a video whose frame size changes); each with its container time (which
    the source counts from the first frame's, as OpenCV's ``CAP_PROP_POS_MSEC``).  None for any other video (OpenCV
    decodes it), or when PyAV cannot open it.

    Those videos: a colour matrix other than BT.601's (HD footage: BT.709; opencv-python 5 converts with the tagged
    matrix, up to 16 levels from OpenCV 4.6 on default.wmv scaled to 1280x720 and tagged BT.709; 8-bit RGB streams
    come this way too, with no matrix to apply, deeper RGB ones are OpenCV's); YUV deeper than 8 bits (a phone's
    10-bit HEVC) and 4:2:0 of an odd height, which swscale converts on its general path, where FFmpeg 8 places the
    chroma where the stream says it sits (left, for H.264, HEVC, MPEG-4) and FFmpeg 5 did not (up to 23 levels, a
    fifth to half of the pixels); and YUV flagged full range outside the yuvj formats (VP9, AV1), which OpenCV 4.6
    expanded as limited range.  On 133 such and other inputs (H.264, HEVC, VP9, AV1, MPEG-4, FFV1, ProRes; 8 to 12
    bits; 4:2:0 to 4:4:4; 641x479; 1080p; turned by a display matrix) the frames equal OpenCV 4.6's, pixel for pixel.
    Interlaced frames too, whatever their matrix (DV AVI, MPEG-2, interlaced H.264 of camcorders and broadcast): FFmpeg
    8's swscale converts them otherwise than FFmpeg 5's (up to 75 levels on a fifth to 43% of the pixels; AU r 0.85-0.91
    against OpenFace on such clips, 2026-12-07), and :func:`_opencv46_bgr` as it did.
    """
    import av

    try:
        container = _open_container(path)
    except (av.FFmpegError, OSError):  # a file PyAV's FFmpeg cannot open: OpenCV decodes it (or says it cannot)
        return None
    stream = container.streams.video[0] if container.streams.video else None
    context = None if stream is None else stream.codec_context
    if context is None:  # no video stream, or none PyAV's FFmpeg has a decoder for
        container.close()
        return None
    fmt = context.format
    eight_bit = fmt is not None and all(c.bits == 8 for c in fmt.components)
    yuv = fmt is not None and fmt.name.startswith("yuv") and len(fmt.components) >= 3
    odd_420 = yuv and context.height % 2 == 1 and fmt.components[1].height < fmt.components[0].height
    full_range = yuv and not fmt.name.startswith("yuvj") and getattr(context, "color_range", 0) == _FULL_RANGE
    opencv_converts = context.colorspace in _BT601 or (context.colorspace == _RGB and not eight_bit)
    context.thread_count = threads
    context.options = {"apply_cropping": "0"}  # OpenCV 4.6 converted the decoder's whole picture, then cropped it
    decoded = container.decode(stream)
    first = None
    if opencv_converts and not (yuv and (not eight_bit or odd_420 or full_range)):
        try:  # interlaced frames are PyAV's too, known from the first one (DV AVI says nothing of its field order)
            first = next(decoded)
        except (av.FFmpegError, StopIteration):
            pass
        if first is None or not first.interlaced_frame:
            container.close()
            return None
    width, height = size

    def frames():
        with container:
            try:
                for frame in itertools.chain([first] if first is not None else [], decoded):
                    bgr = _opencv46_bgr(frame)[:context.height, :context.width]
                    if bgr.shape[:2] != (height, width):  # the frame size changed: scaled as opencv-python does
                        bgr = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), "bgr24").reformat(
                            width, height, interpolation="BICUBIC").to_ndarray()
                    yield bgr, 0.0 if frame.time is None else float(frame.time)
            except av.FFmpegError:  # a truncated or damaged file: the frames before it, as OpenCV reads them
                return

    return frames()


def _opencv46_bgr(frame) -> np.ndarray:
    """A decoded PyAV frame as BGR, converted as OpenCV 4.6 with FFmpeg 5 converted it: swscale with ``SWS_BICUBIC``,
    BT.601's matrix, limited range whatever the stream's flag says (full for the yuvj formats, as swscale has them),
    and the chroma where FFmpeg 5's swscale put it whatever the stream says: the planes are copied into a fresh frame,
    which carries no chroma location, colour tags or range (a range passed to PyAV's ``reformat`` would also set the
    output's in PyAV 12)."""
    import av

    fresh = av.VideoFrame(frame.width, frame.height, frame.format.name)
    for src, dst in zip(frame.planes, fresh.planes):
        rows, line = min(src.height, dst.height), min(src.line_size, dst.line_size)
        plane = np.zeros((dst.height, dst.line_size), np.uint8)
        plane[:rows, :line] = np.frombuffer(src, np.uint8).reshape(src.height, src.line_size)[:rows, :line]
        dst.update(plane)
    return fresh.reformat(frame.width, frame.height, "bgr24", src_colorspace="ITU601",
                          interpolation="BICUBIC").to_ndarray()


def _capture(path: Path, threads: int):
    """OpenCV's capture of a video file, decoding with ``threads`` FFmpeg threads, giving the frames as stored
    (they are turned here: OpenCV's own turn is the display's, opencv-python 5's).  Through OpenCV's FFmpeg backend,
    the one it tries first for a file (OpenFace's OpenCV too): the fallbacks it tries next for a file FFmpeg cannot
    read (its own AVI parser) read no more, and only print complaints that name no file."""
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    return cap


def _open_container(path: Path):
    """PyAV's container of ``path``, its metadata read with replacement characters where it is not UTF-8 (Latin-1
    tags of older AVI and MOV files, which PyAV refuses by default with a UnicodeDecodeError; gpuau reads none of
    it, and OpenCV opens such files)."""
    import av

    return av.open(str(path), metadata_errors="replace")


_ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_ASF_FILE_PROPERTIES = bytes.fromhex("a1dcab8c47a9cf118ee400c00c205365")


def _cut_short_notes(path: Path) -> list:
    """A note when ``path`` is an ASF file (WMV, WMA) shorter than the file size its header records: a copy or
    download that did not finish.  Its frame counts cannot tell: ASF stores none, and FFmpeg estimates the duration
    from the last packets there are (a default.wmv cut to 400 kB announces 52 frames and 59 decode), so without this
    the table of its first frames would pass for the whole video's.  The other containers announce a stored count or a
    duration their cut does not change (:func:`decoding_notes`).  A broadcast ASF, whose header leaves the size
    unset, has no note."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:  # OpenCV opened it: its reading says what went wrong
        return []
    if not head.startswith(_ASF_HEADER):
        return []
    at, end = 30, min(len(head), int.from_bytes(head[16:24], "little"))  # the header object's own fields, then its objects
    while at + 92 <= end:
        size = int.from_bytes(head[at + 16:at + 24], "little")
        if head[at:at + 16] == _ASF_FILE_PROPERTIES:
            recorded = int.from_bytes(head[at + 40:at + 48], "little")
            broadcast = head[at + 88] & 1
            actual = path.stat().st_size
            if broadcast or actual >= recorded:
                return []
            return [f"the file is {actual} bytes where its header records {recorded}: it was cut short (a copy or "
                    "download that did not finish), and the table holds the frames before the cut; fetch it again"]
        if size < 24:
            break
        at += size
    return []


def _unfinished_mp4(path: Path) -> bool:
    """Whether ``path`` is an ISO media file (MP4, MOV, 3GP: an ``ftyp`` box first) whose top-level boxes hold
    media data (``mdat``) and no ``moov``, the index of its samples that a recorder writes last: a recording stopped
    by a crash or a full card, or a copy cut before its end."""
    boxes = set()
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            at = 0
            while at + 8 <= size:
                f.seek(at)
                head = f.read(16)
                length, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if length == 1 and len(head) == 16:  # a 64-bit size follows
                    length = int.from_bytes(head[8:16], "big")
                elif length == 0:  # the last box, to the end of the file
                    length = size - at
                if not boxes and kind != b"ftyp" or length < 8:
                    break
                boxes.add(kind)
                at += length
    except OSError:
        return False
    return b"mdat" in boxes and b"moov" not in boxes


def _audio_only(path: Path) -> bool:
    """Whether FFmpeg (PyAV's) opens ``path`` as a container with audio streams and no video stream (a sound
    track, a podcast): OpenCV only says it cannot open it."""
    import av

    try:
        with _open_container(path) as container:
            return not container.streams.video and bool(container.streams.audio)
    except (av.FFmpegError, OSError):  # not a container FFmpeg reads
        return False


def open_source(path: "str | os.PathLike", *, timestamps: str = "openface", threads: "int | None" = None,
                orientation: str = "openface") -> VideoSource:
    """Open a video file, an image file or a folder of images (the images OpenFace reads there, in its order:
    :data:`SEQUENCE_EXTENSIONS`).

    ``timestamps="openface"`` gives OpenFace's ``index * (1 / fps)`` (identical CSVs); ``"container"`` gives each
    frame's presentation time from the container, counted from the first frame's, exact for variable-frame-rate
    video (frames without a time, which a decoder flushes at the end of a stream whose codec reorders frames, get
    the time before plus ``1 / fps``).  ``threads``: FFmpeg's
    decoding threads for a video (default: :func:`decoder_threads` of one video of its frame size).
    ``orientation``: how a video whose container asks for a rotation is turned (:data:`ORIENTATIONS`; images
    follow their EXIF orientation, as ``cv::imread`` does).

    Raises
    ------
    InputError
        The path does not exist, is not a video/image, holds no images, or the video has no frames.
    """
    import cv2

    check_video_options(timestamps, orientation)
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or folder", "check the path")
    if p.is_dir():
        files, notes = sequence_files(p)
        first = _read_image(files[0])
        return VideoSource(p, "sequence", 0.0, first.shape[1], first.shape[0], len(files), files=files, first=first,
                           notes=notes)
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        img = _read_image(p)
        return VideoSource(p, "image", 0.0, img.shape[1], img.shape[0], 1, files=[p], first=img)
    if not p.is_file():
        raise InputError(p, "not a regular file (a pipe, a socket or a device)", "save the video to a file first")
    if not os.access(p, os.R_OK):
        raise InputError(p, "file is not readable", "check its permissions")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty (0 bytes)", "its copy or download did not finish: fetch it again")
    if not _opencv_can_open(p):
        raise InputError(p, "its name is not valid UTF-8, which OpenCV's video reader cannot open",
                         "rename it in UTF-8, e.g. convmv -f latin1 -t utf8 --notest FILE")
    chosen = threads or decoder_threads()
    cap = _capture(p, chosen)
    if not cap.isOpened():
        cap.release()
        if _audio_only(p):
            raise InputError(p, "holds sound but no video stream", "give the video file this audio came from")
        if _unfinished_mp4(p):
            raise InputError(p, "an MP4/MOV recording that was never finished: its frames are there, but not the "
                             "index (moov) a recorder writes when it stops, which a crash or a full card leaves out",
                             "copy it again if the copy was cut; else a repair tool such as untrunc rebuilds the "
                             "index from a good recording of the same camera")
        raise InputError(p, "not a readable video", "check it is a complete video file in a format FFmpeg decodes")
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not fps or fps != fps or fps <= 0:
        fps = 30.0  # OpenFace's assumption when the container has no frame rate
    rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META))) % 360
    rotation = rotation if rotation in _ROTATE_FLAGS else 0
    turn = _turn(rotation, orientation)
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if width <= 0 or height <= 0:
        cap.release()
        raise InputError(p, "video has no frames", "the file may be empty or truncated")
    wanted = threads or decoder_threads(pixels=width * height)  # the frame size is known once the video is open
    if wanted != chosen:
        cap.release()
        chosen, cap = wanted, _capture(p, wanted)
    if turn in (90, 270):
        width, height = height, width
    source = VideoSource(p, "video", float(fps), width, height, max(count, 0), capture=cap, rotation=rotation,
                         turn=turn, threads=chosen, notes=_cut_short_notes(p))
    source.timestamps = timestamps
    return source
