"""MTCNN box logic between the networks: proposals, non-maximum suppression, box regression,
squaring, crops, and OpenFace's final correction for CLNF.

Port of the helpers of FaceDetectorMTCNN::DetectFaces, FaceDetectorMTCNN.cpp.  Boxes are
``(n, 4) float32`` rows ``x, y, width, height`` (OpenCV ``Rect_<float>``); arithmetic follows the
C++ types (float32 where OpenFace uses ``float``, float64 where it mixes in ``double`` literals)
so that integer truncations and roundings land on the same pixel.
"""
from __future__ import annotations

import cv2
import numpy as np

F32 = np.float32

# OpenFace's correction of the MTCNN box to the box its CLNF initialisation expects
# (x += w * dx, y += h * dy, w *= sw, h *= sh), end of FaceDetectorMTCNN::DetectFaces.
CLNF_BOX_CORRECTION = (-0.0075, 0.2459, 1.0323, 0.7751)
NORM_MEAN, NORM_SCALE = 127.5, 0.0078125


def normalise(pixels: np.ndarray) -> np.ndarray:
    """MTCNN's input scaling, ``(v - 127.5) * 0.0078125`` in float32 (any shape)."""
    return (pixels - F32(NORM_MEAN)) * F32(NORM_SCALE)


def face_probability_map(logits: np.ndarray) -> np.ndarray:
    """PNet's face probability, ``1 / (1 + exp(o0 - o1))`` in float32 (OpenCV Mat arithmetic).

    Parameters
    ----------
    logits : (2, h, w) float32

    Returns
    -------
    (h, w) float32
    """
    return F32(1.0) / (F32(1.0) + np.exp(logits[0] - logits[1], dtype=F32))


def face_probability(logits: np.ndarray) -> np.ndarray:
    """RNet/ONet face probability, ``(float)(1.0 / (1.0 + expf(o0 - o1)))``.

    Parameters
    ----------
    logits : (n, 2) float32

    Returns
    -------
    (n,) float32
    """
    e = np.exp((logits[:, 0] - logits[:, 1]).astype(F32), dtype=F32)
    return (1.0 / (1.0 + e.astype(np.float64))).astype(F32)


def generate_bounding_boxes(prob: np.ndarray, regression: np.ndarray, scale: float, threshold: float,
                            face_support: int = 12, stride: int = 2):
    """Boxes in image coordinates for every heat-map cell with ``prob >= threshold``.

    Port of generate_bounding_boxes, FaceDetectorMTCNN.cpp (cells visited column by column).

    Parameters
    ----------
    prob : (h, w) float32
        PNet face probability at one pyramid level.
    regression : (4, h, w) float32
        PNet box regression (dx, dy, dw, dh).
    scale : float
        Pyramid scale of the level (OpenFace passes it as ``float``).

    Returns
    -------
    boxes : (n, 4) float32
    scores : (n,) float32
    corrections : (n, 4) float32
    """
    xs, ys = np.nonzero(prob.T >= F32(threshold))  # x outer, y inner
    s = F32(scale)
    min_x = np.trunc((stride * xs + 1).astype(F32) / s)
    max_x = np.trunc((stride * xs + face_support).astype(F32) / s)
    min_y = np.trunc((stride * ys + 1).astype(F32) / s)
    max_y = np.trunc((stride * ys + face_support).astype(F32) / s)
    boxes = np.stack([min_x, min_y, max_x - min_x, max_y - min_y], axis=1).astype(F32)
    return boxes, prob[ys, xs].astype(F32), regression[:, ys, xs].T.astype(F32)


def _round_rects(boxes: np.ndarray) -> np.ndarray:
    """``cv::Rect(Rect_<float>)``: each field rounded half to even (cvRound)."""
    return np.rint(boxes).astype(np.int64)


def non_maximum_suppression(boxes: np.ndarray, scores: np.ndarray, threshold: float, minimum: bool) -> np.ndarray:
    """Greedy NMS, highest score first; ties go to the later box.

    Port of non_maximum_supression, FaceDetectorMTCNN.cpp: overlaps are computed on the boxes
    rounded to integer ``cv::Rect``, as intersection over union (``minimum=False``) or over the
    smaller area (``minimum=True``), and a box is dropped when the overlap is ``> threshold``.

    Parameters
    ----------
    boxes : (n, 4) float32
    scores : (n,) float32
    threshold : float
    minimum : bool

    Returns
    -------
    (k,) int64
        Indices of the kept boxes, in decreasing score order.
    """
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int64)
    r = _round_rects(boxes)
    x1, y1, w, h = r.T
    x2, y2, area = x1 + w, y1 + h, w * h
    order = np.lexsort((np.arange(n), scores))[::-1]  # std::multimap order, taken from the back
    keep = []
    thresh = F32(threshold)
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
        ih = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0).astype(F32)
        denom = np.minimum(area[i], area[rest]).astype(F32) if minimum else (area[i] + area[rest]).astype(F32) - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = inter / denom
        order = rest[~(overlap > thresh)]
    return np.array(keep, np.int64)


def apply_correction(boxes: np.ndarray, corrections: np.ndarray, add1: bool) -> np.ndarray:
    """Box regression on the integer-rounded box.

    Port of apply_correction, FaceDetectorMTCNN.cpp.

    Parameters
    ----------
    boxes : (n, 4) float32
    corrections : (n, 4) float32
        dx, dy, dw, dh relative to the box size.
    add1 : bool
        Grow the rounded box by one pixel first (the ONet stage).

    Returns
    -------
    (n, 4) float32
    """
    r = _round_rects(boxes)
    x, y, w, h = (r[:, i].astype(F32) for i in range(4))
    if add1:
        w, h = w + F32(1), h + F32(1)
    c = corrections.astype(F32)
    min_x = x + c[:, 0] * w
    min_y = y + c[:, 1] * h
    max_x = (x + w) + w * c[:, 2]
    max_y = (y + h) + h * c[:, 3]
    return np.stack([min_x, min_y, max_x - min_x, max_y - min_y], axis=1).astype(F32)


def rectify(boxes: np.ndarray) -> np.ndarray:
    """Square boxes around their centres, truncated to whole pixels.

    Port of rectify, FaceDetectorMTCNN.cpp.

    Parameters
    ----------
    boxes : (n, 4) float32

    Returns
    -------
    (n, 4) float32
    """
    x, y, w, h = boxes.astype(F32).T
    side = np.maximum(w, h)
    new_x = (x.astype(np.float64) + 0.5 * (w - side).astype(np.float64)).astype(F32)
    new_y = (y.astype(np.float64) + 0.5 * (h - side).astype(np.float64)).astype(F32)
    return np.stack([np.trunc(new_x), np.trunc(new_y), np.trunc(side), np.trunc(side)], axis=1).astype(F32)


def crop_proposals(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Network inputs for RNet/ONet: each box's pixels (zero outside the image), resized and normalised.

    Port of the crop loops of FaceDetectorMTCNN::DetectFaces: a box ``x, y, w, h`` takes the
    ``(h + 1) x (w + 1)`` pixels starting at ``(x - 1, y - 1)``, resized with bilinear
    interpolation to ``size x size``, then ``(v - 127.5) * 0.0078125``.

    Parameters
    ----------
    image : (H, W, 3) uint8 (or any real dtype)
        The BGR frame; pixels are converted to float32 before resizing, as OpenFace does.
    boxes : (n, 4) float32
        Squared, whole-pixel boxes (after :func:`rectify`).
    size : int
        24 (RNet) or 48 (ONet).

    Returns
    -------
    (n, size, size, 3) float32
        Normalised crops, BGR.
    """
    height, width = image.shape[:2]
    out = np.empty((len(boxes), size, size, 3), F32)
    for k, (bx, by, bw, bh) in enumerate(boxes.astype(np.float64)):
        tw, th = int(bw + 1), int(bh + 1)
        x0_in, y0_in = max(int(bx - 1), 0), max(int(by - 1), 0)
        x1_in, y1_in = min(int(bx + tw - 1), width), min(int(by + th - 1), height)
        x0_out, y0_out = max(int(-bx + 1), 0), max(int(-by + 1), 0)
        if (x0_out, y0_out, x1_in - x0_in, y1_in - y0_in) == (0, 0, tw, th):  # inside the image
            tmp = image[y0_in:y1_in, x0_in:x1_in].astype(F32)
        else:
            tmp = np.zeros((max(th, 1), max(tw, 1), 3), F32)
            if x1_in > x0_in and y1_in > y0_in and tw > 0 and th > 0:
                tmp[y0_out:y0_out + y1_in - y0_in, x0_out:x0_out + x1_in - x0_in] = image[y0_in:y1_in, x0_in:x1_in]
        out[k] = cv2.resize(tmp, (size, size), interpolation=cv2.INTER_LINEAR)
    return normalise(out)


def clnf_box(boxes: np.ndarray) -> np.ndarray:
    """OpenFace's correction of the MTCNN box into the box CLNF is initialised from.

    Port of the last loop of FaceDetectorMTCNN::DetectFaces.

    Parameters
    ----------
    boxes : (n, 4) float32

    Returns
    -------
    (n, 4) float32
    """
    dx, dy, sw, sh = CLNF_BOX_CORRECTION
    x, y, w, h = boxes.astype(np.float64).T
    return np.stack([w * dx + x, h * dy + y, sw * w, sh * h], axis=1).astype(F32)
