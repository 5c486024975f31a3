"""The aligned faces and their FHOG descriptors in FeatureExtraction's files (``-simalign``, ``-hogalign``).

Beside a video's table ``<name>.csv`` (or ``.parquet``), OpenFace writes

* ``<name>.hog``: per frame, in frame order, ``int32`` cell columns (12), ``int32`` cell rows (12), ``int32``
  channels (31), ``float32`` 1 (face tracked) or -1 (not), then the 4464 ``float32`` values in the order the AU
  models read them (``RecorderHOG::Write``, RecorderHOG.cpp);
* ``<name>_aligned/frame_det_00_%06d.bmp``: the 112x112 BGR face, similarity-aligned and masked at OpenFace's AU
  scale (0.7), per frame numbered from 1 (``RecorderOpenFace::WriteObservation``, RecorderOpenFace.cpp); other
  sizes, scales, unmasked or grey with the options of :class:`AlignedFaces`.

A frame without a tracked face gets an all-black face and the FHOG of that face (zeros), with the flag -1, as
OpenFace's ``FaceAnalyser::AddNextFrame`` makes them (and writes them unless ``-nobadaligned``).  A single image
(FaceLandmarkImg) gets a record and a face per face found, ``face_det_%06d.bmp`` numbered from 0, the flag telling
whether the face's fit succeeded; a multi-face video (FaceLandmarkVidMulti) one per tracked face and frame, in the
table's row order, ``frame_det_<slot>_<frame>.bmp``.  Both outputs are written to temporary names beside their
targets and renamed into place by :meth:`FaceRecorder.commit`, like the table.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpuau._atomic import discard, fsync_path, replace_dir, temp_beside, temp_dir_beside

HOG_CELLS = 12
HOG_CHANNELS = 31


@dataclass(frozen=True)
class AlignedFaces:
    """The aligned faces FeatureExtraction writes (``-simalign``) and its options for them (``FaceAnalyserParameters``
    and ``RecorderOpenFaceParameters``).

    Attributes
    ----------
    size : int
        ``-simsize``: width and height in pixels (112).
    scale : float or None
        ``-simscale``: PDM mean-shape units to pixels; None: 0.7, or ``size * (0.7 / 112)`` when ``size`` is not 112
        (OpenFace's scale for a ``-simsize`` given alone).
    masked : bool
        False: ``-nomask``, the whole warped square (``AlignFace``) instead of the masked face (``AlignFaceMask``).
    gray : bool
        ``-g``: written as ``cv::cvtColor(BGR2GRAY)`` makes it grey.
    failed : bool
        False: ``-nobadaligned``, no file for a face whose tracking failed (its ``.hog`` record is still written).
    """

    size: int = 112
    scale: "float | None" = None
    masked: bool = True
    gray: bool = False
    failed: bool = True

    def __post_init__(self):
        if int(self.size) < 1 or (self.scale is not None and not float(self.scale) > 0):
            raise ValueError(f"aligned faces of size {self.size}, scale {self.scale}: need a positive size and scale")

    @classmethod
    def of(cls, aligned: "AlignedFaces | bool | None") -> "AlignedFaces | None":
        """``aligned`` itself, OpenFace's default faces for True, None for False or None.

        Raises
        ------
        TypeError
            ``aligned`` is none of these (a number or a string is not taken for a yes or a no).
        """
        if isinstance(aligned, cls) or aligned is None:
            return aligned
        if isinstance(aligned, (bool, np.bool_)):
            return cls() if aligned else None
        raise TypeError(f"write_aligned={aligned!r}: use True, False or gpuau.io.AlignedFaces(...)")

    @property
    def sim_scale(self) -> float:
        """The scale the faces are warped at."""
        if self.scale is not None:
            return float(self.scale)
        return 0.7 if self.size == 112 else self.size * (0.7 / 112.0)

    @property
    def au_faces(self) -> bool:
        """Whether these are the faces the AU stage computes anyway (112 x 112, scale 0.7, masked)."""
        return self.size == 112 and self.sim_scale == 0.7 and self.masked


def hog_path(output: "str | os.PathLike") -> Path:
    """FeatureExtraction's ``.hog`` file beside the table ``output``: ``<stem>.hog``."""
    output = Path(output)
    return output.with_name(output.stem + ".hog")


def aligned_dir(output: "str | os.PathLike") -> Path:
    """FeatureExtraction's folder of aligned faces beside the table ``output``: ``<stem>_aligned``."""
    output = Path(output)
    return output.with_name(output.stem + "_aligned")


def aligned_name(number: int, image: bool = False, face_id: int = 0) -> str:
    """The aligned face's file name: of a sequence's frame (numbered from 1) and face (its tracking slot, 0 with one
    face), ``frame_det_00_000001.bmp``; of a single image's face (numbered from 0), ``face_det_000000.bmp``."""
    return f"face_det_{number:06d}.bmp" if image else f"frame_det_{face_id:02d}_{number:06d}.bmp"


def read_hog(path: "str | os.PathLike") -> "tuple[np.ndarray, np.ndarray]":
    """The descriptors of a ``.hog`` file (OpenFace's or gpuau's).

    Returns
    -------
    hog : (N, rows * cols * 31) float32
    success : (N,) bool
        The frame's flag (1: tracked).

    Raises
    ------
    ValueError
        A truncated file, or records of different sizes.
    """
    data = np.fromfile(path, np.uint8)
    if data.size == 0:
        return np.zeros((0, HOG_CELLS * HOG_CELLS * HOG_CHANNELS), np.float32), np.zeros(0, bool)
    if data.size < 16:
        raise ValueError(f"{path}: truncated .hog file ({data.size} bytes)")
    cols, rows, channels = data[:12].view(np.int32)
    width = int(cols) * int(rows) * int(channels)
    record = 16 + 4 * width
    if min(cols, rows, channels) <= 0 or data.size % record:
        raise ValueError(f"{path}: not a .hog file of {cols}x{rows}x{channels} records ({data.size} bytes)")
    records = data.reshape(-1, record)
    header = records[:, :12].copy().view(np.int32)
    if (header != header[0]).any():
        raise ValueError(f"{path}: records of different sizes")
    values = records[:, 12:].copy().view(np.float32)
    return values[:, 1:], values[:, 0] > 0


class FaceRecorder:
    """FeatureExtraction's ``.hog`` file and/or aligned-face folder of one video, frame by frame (or of one image,
    face by face).

    Frames are added in order (:meth:`add`, numbered from 1 unless numbered by the caller; an image's faces from 0);
    :meth:`commit` moves the finished outputs into place (an earlier folder of aligned faces of the same name is
    replaced), :meth:`abort` drops them.  Used as a context manager, an exception before :meth:`commit` aborts.

    Parameters
    ----------
    output : path-like
        The video's table; the outputs are named after it (:func:`hog_path`, :func:`aligned_dir`).
    hog : bool
        Write the ``.hog`` file.
    aligned : AlignedFaces or bool, optional
        Write the aligned faces (True: OpenFace's default ones).
    image : bool
        A single image's faces (FaceLandmarkImg's names), not a sequence's frames.

    Attributes
    ----------
    aligned : AlignedFaces or None
        The aligned faces :meth:`add` takes (None: it takes none).
    """

    def __init__(self, output: "str | os.PathLike", *, hog: bool = False, aligned: "AlignedFaces | bool | None" = None,
                 image: bool = False):
        self.records = 0  # frames (or faces) added
        self.image = image
        self.aligned = AlignedFaces.of(aligned)
        self._hog = self._hog_tmp = self._faces_tmp = None
        self.hog_path = hog_path(output) if hog else None
        self.aligned_dir = aligned_dir(output) if self.aligned else None
        try:
            if hog:
                self._hog, self._hog_tmp = temp_beside(self.hog_path, "wb")
            if self.aligned:
                self._faces_tmp = temp_dir_beside(self.aligned_dir)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> "FaceRecorder":
        return self

    def __exit__(self, kind, error, tb) -> None:
        if kind is not None:
            self.abort()

    def add(self, hog: np.ndarray, faces: "np.ndarray | None", success, *, numbers=None, face_ids=None) -> None:
        """The next frames' (or faces') descriptors and aligned faces, on the host.

        Parameters
        ----------
        hog : (N, 4464) float
        faces : (N, size, size, 3) uint8 BGR, or None without :attr:`aligned`
            The faces of :attr:`aligned`'s size, scale and mask, in colour.
        success : (N,) bool
        numbers, face_ids : (N,) int, optional
            Each face's frame number and tracking slot (a multi-face video's faces); default: the next frames'
            numbers (an image's: the next faces'), slot 0.
        """
        import cv2

        success = np.asarray(success, bool).reshape(-1)
        n = len(success)
        if self._hog is not None:
            records = np.empty((n, 4 + HOG_CELLS * HOG_CELLS * HOG_CHANNELS), np.float32)
            records[:, :3].view(np.int32)[:] = (HOG_CELLS, HOG_CELLS, HOG_CHANNELS)
            records[:, 3] = np.where(success, 1, -1)
            records[:, 4:] = np.asarray(hog, np.float32).reshape(n, -1)
            self._hog.write(records.tobytes())
        if self._faces_tmp is not None:
            first = self.records + (0 if self.image else 1)
            numbers = range(first, first + len(success)) if numbers is None else numbers
            face_ids = [0] * len(success) if face_ids is None else face_ids
            for face, number, face_id, tracked in zip(np.asarray(faces), numbers, face_ids, success):
                if not (tracked or self.aligned.failed):
                    continue
                if self.aligned.gray:
                    face = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
                ok, bmp = cv2.imencode(".bmp", face)  # cv::imwrite's BMP; written here, so a full disk raises ENOSPC
                if not ok:
                    raise ValueError(f"aligned face {face.shape} {face.dtype}: not an image OpenCV encodes as BMP")
                (self._faces_tmp / aligned_name(int(number), self.image, int(face_id))).write_bytes(bmp.tobytes())
        self.records += n

    def commit(self) -> None:
        """Move the finished outputs into place."""
        if self._hog is not None:
            self._hog.close()
            fsync_path(self._hog_tmp)
            os.replace(self._hog_tmp, self.hog_path)
            self._hog = self._hog_tmp = None
        if self._faces_tmp is not None:
            replace_dir(self._faces_tmp, self.aligned_dir)
            self._faces_tmp = None

    def abort(self) -> None:
        """Drop the unfinished outputs (earlier ones of the same names are left as they were)."""
        if self._hog is not None:
            discard(self._hog, self._hog_tmp)
            self._hog = self._hog_tmp = None
        if self._faces_tmp is not None:
            shutil.rmtree(self._faces_tmp, ignore_errors=True)
            self._faces_tmp = None
