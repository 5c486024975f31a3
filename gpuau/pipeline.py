"""One video, frame by frame, as OpenFace's ``FeatureExtraction`` runs it (the CPU reference path).

frames -> :class:`~gpuau.landmarks.tracker.FaceTracker` (MTCNN, CLNF, validator, pose) ->
:class:`~gpuau.au.AUAnalyzer` (alignment, FHOG, running medians, offline pass) -> OpenFace columns.

Port of the frame loop of ``FeatureExtraction.cpp`` and of ``FaceLandmarkImg.cpp`` for single images.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from gpuau.device import Backend, resolve_device

FORMATS = ("csv", "parquet")


@dataclass
class Result:
    """Per-frame output of one input, in OpenFace's columns.

    Attributes
    ----------
    columns : dict[str, ndarray (rows,)]
        Columns in OpenFace's order (``frame, face_id, timestamp, confidence, success, pose_*, x_*, y_*,
        X_*, Y_*, Z_*, p_*, AU*_r, AU*_c``).
    source : str
        The input's path (or ``"<frames>"``).
    frames_decoded : int
    elapsed : float
        Seconds spent analysing.
    """

    columns: dict
    source: str = "<frames>"
    frames_decoded: int = 0
    elapsed: float = 0.0
    warnings: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    @property
    def faces_found(self) -> int:
        """Rows with ``success == 1``."""
        return int(np.sum(self.columns.get("success", []))) if self.columns else 0

    def to_pandas(self):
        """The table as a :class:`pandas.DataFrame` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("Result.to_pandas needs pandas: pip install pandas") from e
        return pd.DataFrame(self.columns)

    def to_csv(self, path: "str | os.PathLike") -> Path:
        """Write an OpenFace CSV (FeatureExtraction's formats), atomically."""
        from gpuau.io import write_openface_csv

        return write_openface_csv(path, self.columns)

    def to_parquet(self, path: "str | os.PathLike") -> Path:
        """Write the same columns as Parquet (needs pyarrow), atomically."""
        from gpuau.io import write_openface_parquet

        return write_openface_parquet(path, self.columns)


def base_columns() -> list:
    """FeatureExtraction's non-AU columns that gpuau writes (no gaze), in file order."""
    from gpuau.io import openface_columns

    return openface_columns()


def landmark_row(frame_number: int, timestamp: float, r) -> np.ndarray:
    """One row of :func:`base_columns` from a :class:`~gpuau.landmarks.tracker.LandmarkResult`."""
    return np.concatenate([
        [frame_number, 0, timestamp, r.confidence, int(r.success)], r.pose,
        r.landmarks[:, 0], r.landmarks[:, 1], r.landmarks_3d[:, 0], r.landmarks_3d[:, 1], r.landmarks_3d[:, 2],
        r.params_global, r.params_local]).astype(np.float64)


def _columns(names: list, rows: np.ndarray) -> dict:
    return {n: rows[:, j] for j, n in enumerate(names)}


class Analyzer:
    """OpenFace 2.2 FeatureExtraction: landmarks, head pose and Action Units of one face per frame.

    Parameters
    ----------
    device : str or Backend
        ``"auto"`` (GPU if usable), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    models : path-like, optional
        OpenFace model folder (see :func:`gpuau.models.resolve_models_dir`).

    Examples
    --------
    >>> an = gpuau.Analyzer(device="cpu")                     # doctest: +SKIP
    >>> res = an.analyze_video("interview.mp4")               # doctest: +SKIP
    >>> res.to_csv("interview.csv")                           # doctest: +SKIP
    """

    def __init__(self, device: "str | Backend" = "auto", *, models: "str | os.PathLike | None" = None):
        from gpuau.models.store import resolve_models_dir

        self.backend = resolve_device(device)
        self.models = resolve_models_dir(models)
        self._clnf = None
        self._detector = None
        self._validator = None

    # Models load once per Analyzer and are shared by every video it analyses.
    def _tracker(self, intrinsics):
        from gpuau.detect import MTCNN
        from gpuau.landmarks.clnf import CLNF
        from gpuau.landmarks.tracker import FaceTracker, select_box
        from gpuau.landmarks.validator import DetectionValidator

        if self._clnf is None:
            self._clnf = CLNF.load(self.models)
            mtcnn = MTCNN(self.models, device=self.backend)
            self._detector = lambda image: select_box(mtcnn.detect(image))
            self._validator = DetectionValidator.load(self.models).check
        return FaceTracker(self._clnf, detect=self._detector, validate=self._validator, intrinsics=intrinsics,
                           models=self.models)

    def _au_analyzer(self, dynamic: bool = True):
        from gpuau.au import AUAnalyzer

        return AUAnalyzer(self.models, dynamic=dynamic, device=self.backend)

    def track(self, frames: Iterable, intrinsics=None) -> Iterator[tuple[np.ndarray, object]]:
        """Landmark row (:func:`base_columns`) of each frame, feeding the AU analyser as it goes.

        Yields ``(row, au_analyzer)`` per :class:`~gpuau.video.Frame`; after the last frame
        ``au_analyzer.finish()`` gives the post-processed AU columns.
        """
        tracker = None
        aus = self._au_analyzer()
        for frame in frames:
            if tracker is None:
                tracker = self._tracker(intrinsics)
            r = tracker.track(frame.image, frame.gray)
            aus.add_frame(frame.image, r.landmarks, r.detection_success, frame.timestamp)
            yield landmark_row(frame.index + 1, frame.timestamp, r), aus

    def analyze_video(self, path: "str | os.PathLike", *, progress: "Callable[[int], None] | None" = None) -> Result:
        """Analyse a video file, an image, or a folder of images (an image sequence) like FeatureExtraction.

        Parameters
        ----------
        path : path-like
        progress : callable, optional
            Called with the number of frames done after each frame.

        Raises
        ------
        gpuau.video.InputError
            Unreadable input, or no frame could be decoded.
        """
        from gpuau.video import open_source

        source = open_source(path)
        return self._analyze(source, str(path), source.intrinsics, progress)

    def analyze_frames(self, frames: Iterable[np.ndarray], *, fps: float = 30.0, intrinsics=None) -> Result:
        """Analyse an iterable of frames (BGR or gray, 8- or 16-bit, all of one size) as one video at ``fps``.

        ``intrinsics`` ``(fx, fy, cx, cy)`` default to OpenFace's guess from the frame size.
        """
        from gpuau.video import Frame, to_bgr8, to_gray8

        def decoded():
            for i, img in enumerate(frames):
                bgr = to_bgr8(np.asarray(img))
                yield Frame(i, i / fps if fps else 0.0, bgr, to_gray8(bgr))

        return self._analyze(decoded(), "<frames>", intrinsics, None)

    def analyze_image(self, image: "np.ndarray | str | os.PathLike") -> Result:
        """Analyse one image (an array or a file) as a one-frame video."""
        if not isinstance(image, np.ndarray):
            return self.analyze_video(image)
        return self.analyze_frames([image], fps=0.0)

    def _analyze(self, frames, name, intrinsics, progress) -> Result:
        from gpuau.video import InputError

        t0 = time.perf_counter()
        rows, aus = [], None
        for row, aus in self.track(frames, intrinsics):
            rows.append(row)
            if progress:
                progress(len(rows))
        if not rows:
            raise InputError(name, "no frames could be decoded", "the file may be empty, truncated or not a video")
        columns = _columns(base_columns(), np.array(rows))
        columns.update(aus.finish())
        return Result(columns, source=name, frames_decoded=len(rows), elapsed=time.perf_counter() - t0)

    def write_video(self, path: "str | os.PathLike", output: "str | os.PathLike", *, format: str = "csv",
                    progress: "Callable[[int], None] | None" = None, chunk: int = 256,
                    on_open: "Callable | None" = None) -> dict:
        """Analyse ``path`` and write ``output`` atomically, streaming rows so memory stays bounded.

        ``on_open(source)`` is called once the input is open (e.g. to size a progress bar).

        Returns
        -------
        dict
            ``frames``, ``faces`` (successful frames), ``frame_count`` (the container's), ``elapsed``.
        """
        from gpuau.io import OpenFaceCSVWriter, openface_columns
        from gpuau.video import InputError, open_source

        if format not in FORMATS:
            raise ValueError(f"format {format!r}: use one of {FORMATS}")
        source = open_source(path)
        if on_open:
            on_open(source)
        if format == "parquet":
            res = self._analyze(source, str(path), source.intrinsics, progress)
            res.to_parquet(output)
            return {"frames": len(res), "faces": res.faces_found, "frame_count": source.frame_count,
                    "elapsed": res.elapsed}
        t0 = time.perf_counter()
        names = base_columns()
        au_names = self._au_analyzer()
        writer = OpenFaceCSVWriter(output, openface_columns(au_names.reg_names, au_names.cls_names))
        rows, n, faces, aus = [], 0, 0, None
        try:
            for row, aus in self.track(source, source.intrinsics):
                rows.append(row)
                n += 1
                faces += int(row[4])
                if len(rows) == chunk:
                    writer.write_rows(_columns(names, np.array(rows)))
                    rows = []
                if progress:
                    progress(n)
            if n == 0:
                raise InputError(path, "no frames could be decoded", "the file may be empty, truncated or not a video")
            if rows:
                writer.write_rows(_columns(names, np.array(rows)))
            writer.close(aus.finish())
        except BaseException:
            writer.abort()
            raise
        return {"frames": n, "faces": faces, "frame_count": source.frame_count, "elapsed": time.perf_counter() - t0}


def analyze_video(path: "str | os.PathLike", *, device: str = "auto", models=None, output: "str | os.PathLike | None" = None,
                  format: str = "csv") -> Result:
    """Analyse one video with a fresh :class:`Analyzer`; optionally write ``output`` (CSV or Parquet)."""
    res = Analyzer(device, models=models).analyze_video(path)
    if output is not None:
        (res.to_parquet if format == "parquet" else res.to_csv)(output)
    return res
