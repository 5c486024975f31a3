"""Optional GPU video decoding with NVIDIA's NVDEC, through the ``PyNvVideoCodec`` package.

``pip install PyNvVideoCodec`` (NVIDIA's Python bindings of the Video Codec SDK) on a machine with an
NVIDIA GPU and driver lets :class:`gpuau.engine.Engine` decode its videos on the GPU
(``Engine(..., decode="nvdec")``): :class:`PyNvVideoCodec.SimpleDecoder` decodes to RGB in device
memory, the frames are turned to BGR there and copied to the host as the pipeline's
:class:`~gpuau.video.Frame` (the trackers, MTCNN and the AU stage take host frames).  It is never
required: without the package, without a GPU, or for a file it cannot open, :func:`nvdec_frames`
returns None after a log line and the caller decodes with OpenCV.

NVDEC converts YUV to RGB with its own arithmetic, not FFmpeg's (OpenCV's), so pixel values can
differ by a level or two and the outputs are not byte-identical to OpenCV-decoded runs (nor to
OpenFace's); this is why it is asked for, never automatic.  Frames carry OpenFace's timestamps
(``index * (1.0 / fps)``); container timestamps need OpenCV decoding.

Tested with stand-ins for ``PyNvVideoCodec`` and CuPy (``tests/test_video.py``: order, batches, RGB to BGR, the
fallbacks); not yet run with a real NVDEC.
"""
from __future__ import annotations

import logging
import os
from typing import Iterator

import numpy as np

from gpuau.video.source import Frame, array_frames

PACKAGE = "PyNvVideoCodec"
"""The PyPI package (and module) NVDEC decoding uses."""

BATCH = 8
"""Frames decoded per :meth:`SimpleDecoder.get_batch_frames` call."""

log = logging.getLogger(__name__)


def _decoder_module():
    """``PyNvVideoCodec`` and ``cupy`` when both import and CuPy finds a GPU; else None and the reason."""
    try:
        import PyNvVideoCodec as nvc
    except ImportError:
        return None, f"{PACKAGE} is not installed (pip install {PACKAGE})"
    from gpuau.device import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    return (None, f"no usable CUDA GPU ({reason})") if reason else (nvc, "")


def nvdec_frames(path: "str | os.PathLike", fps: float, device_id: int = 0) -> "Iterator[Frame] | None":
    """The frames of a video file decoded by NVDEC, or None (logged) when it cannot be used.

    Parameters
    ----------
    path : path-like
        A video file in a seekable container (MP4, MKV, AVI, MOV, ...).
    fps : float
        The container's frame rate (timestamps are ``index * (1.0 / fps)``, as OpenFace writes them).
    device_id : int
        CUDA device that decodes.

    Returns
    -------
    iterator of Frame or None
        BGR ``(H, W, 3)`` uint8 and grey frames in host memory, in decoding order.
    """
    nvc, reason = _decoder_module()
    if nvc is None:
        log.info("%s: decoding with OpenCV: %s", path, reason)
        return None
    try:
        decoder = nvc.SimpleDecoder(str(path), gpu_id=device_id, use_device_memory=True,
                                    output_color_type=nvc.OutputColorType.RGB)
    except Exception as e:  # a codec NVDEC lacks, a container it cannot seek
        log.info("%s: decoding with OpenCV: %s cannot open it (%s)", path, PACKAGE, e)
        return None
    return array_frames(_bgr_images(decoder), fps)


def _bgr_images(decoder) -> Iterator[np.ndarray]:
    """The decoder's RGB frames as host BGR arrays, in decoding order."""
    import cupy

    while True:
        batch = decoder.get_batch_frames(BATCH)
        if not batch:
            return
        for decoded in batch:
            yield np.ascontiguousarray(cupy.asnumpy(cupy.asarray(decoded)[..., ::-1]))
