"""OpenFace's MTCNN face detector on onnxruntime, batched over frames.

Port of FaceDetectorMTCNN::DetectFaces, FaceDetectorMTCNN.cpp, and of DetectSingleFaceMTCNN,
LandmarkDetectorUtils.cpp.  FeatureExtraction hands the detector the BGR colour frame (a grey
frame is expanded to three channels); the networks see RGB.

Batching: PNet runs once per group of same-sized frames on a mosaic holding every pyramid level of
each frame (see :mod:`gpuau.detect.onnx_graphs` for why that is exact), built on the detector's
device by one ``pnet_pyramid`` launch and handed to onnxruntime there; RNet and ONet each run once
on the crops of all frames.  :meth:`MTCNN.detect` is :meth:`MTCNN.detect_batch` on one frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gpuau.detect import proposals as P
from gpuau.detect.onnx_graphs import cnn_graph_file, output_size
from gpuau.detect.sessions import make_session, run_session
from gpuau.models.mtcnn_file import MTCNNWeights, load_mtcnn

PYRAMID_FACTOR = 0.709
FACE_SUPPORT = 12  # PNet's receptive field, px
PNET_STRIDE = 2
RNET_SIZE, ONET_SIZE = 24, 48
PNET_LEVEL_NMS, PNET_NMS, RNET_NMS, ONET_NMS = 0.5, 0.7, 0.7, 0.7
CROP_CHUNK = 2048  # crops per RNet/ONet run, bounds memory


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, most confident first.

    Attributes
    ----------
    boxes : (N, 4) float64
        ``x, y, width, height`` after OpenFace's correction, i.e. the box CLNF is initialised from.
    scores : (N,) float64
        ONet face probability.
    points : (N, 5, 2) float64
        ONet's five landmarks (eyes, nose, mouth corners) as ``x, y``, in the same pixel
        convention as the boxes (OpenFace does not use them).
    """

    boxes: np.ndarray
    scores: np.ndarray
    points: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def select_face(detections: Detections, preference: "tuple[float, float] | None" = None) -> "int | None":
    """Index of the face FeatureExtraction would take, or ``None`` when there is none.

    Port of DetectSingleFaceMTCNN, LandmarkDetectorUtils.cpp: the widest box (the first one on a
    tie), or, with a preference point, the box whose centre is nearest to it.
    """
    if len(detections) == 0:
        return None
    b = detections.boxes.astype(np.float32)
    if preference is None:
        return int(np.argmax(b[:, 2]))
    px, py = preference
    d = np.hypot(px - (b[:, 2] / 2 + b[:, 0]), py - (b[:, 3] / 2 + b[:, 1]))
    return int(np.argmin(d))


def select_box(detections: Detections, preference: "tuple[float, float] | None" = None) -> "np.ndarray | None":
    """The box (x, y, width, height) float32 of the face FeatureExtraction would take (:func:`select_face`), or
    None."""
    i = select_face(detections, preference)
    return None if i is None else np.asarray(detections.boxes[i], dtype=np.float32)


def pyramid_levels(height: int, width: int, min_face_size: int = 60) -> list[tuple[float, int, int]]:
    """Scales and sizes of the PNet image pyramid.

    Port of the pyramid set-up in FaceDetectorMTCNN::DetectFaces; levels too small for one PNet
    window (where OpenFace would fail) are left out.

    Returns
    -------
    list of (scale, height, width)
    """
    min_dim = min(height, width)
    if min_dim < FACE_SUPPORT:
        return []
    num_scales = math.floor(math.log(min_face_size / min_dim) / math.log(PYRAMID_FACTOR)) + 1
    levels = []
    for i in range(num_scales):
        scale = (FACE_SUPPORT / min_face_size) * math.pow(PYRAMID_FACTOR, i)
        h, w = math.ceil(height * scale), math.ceil(width * scale)
        if min(h, w) >= FACE_SUPPORT:
            levels.append((scale, h, w))
    return levels


def pack_levels(sizes: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Shelf-pack pyramid levels into one canvas, every level at even coordinates (PNet's stride).

    Parameters
    ----------
    sizes : list of (height, width), largest first

    Returns
    -------
    offsets : list of (y, x)
    canvas : (height, width)
    """
    def even(v: int) -> int:
        return v + (v & 1)

    canvas_w = even(max(w for _, w in sizes))
    offsets, x, y, shelf_h = [], 0, 0, 0
    for h, w in sizes:
        if x > 0 and x + w > canvas_w:
            x, y, shelf_h = 0, even(y + shelf_h), 0
        offsets.append((y, x))
        x, shelf_h = even(x + w), max(shelf_h, h)
    return offsets, (even(y + shelf_h), canvas_w)


def pnet_mosaic(frames: list[np.ndarray], levels: list[tuple[float, int, int]], device="cpu"):
    """PNet's input for same-sized frames: every pyramid level of a frame packed into one canvas.

    Each level is the float frame resized bilinearly (cv::resize's default) to the level's size and
    normalised ``(v - 127.5) * 0.0078125``, as in FaceDetectorMTCNN::DetectFaces; computed by
    ``backend.kernels.pnet_pyramid`` (``pyramid.cu`` on ``cuda`` and ``emulated``, its Numba twin
    on ``cpu``), all frames and levels at once.

    Parameters
    ----------
    frames : list of (H, W, 3) BGR (uint8 or any real dtype), all the same size, or their stack
        ``(N, H, W, 3)`` (NumPy, or already on ``device``)
    levels : list of (scale, height, width), from :func:`pyramid_levels`
    device : str or Backend
        Where the mosaic is built.

    Returns
    -------
    x : (N, 3, Hm, Wm) float32, on ``device``'s array module
        RGB mosaics.
    valid : (1, 1, Hm - 2, Wm - 2) bool
        Positions of PNet's first feature map that belong to a level.
    offsets : list of (y, x)
        Top-left corner of each level in the mosaic (even).
    """
    from gpuau.device import resolve_device

    backend = resolve_device(device)
    sizes = [(h, w) for _, h, w in levels]
    offsets, (ch, cw) = pack_levels(sizes)
    valid = np.zeros((1, 1, ch - 2, cw - 2), bool)
    for (h, w), (oy, ox) in zip(sizes, offsets):
        valid[0, 0, oy:oy + h - 2, ox:ox + w - 2] = True
    stack = frames if hasattr(frames, "ndim") else np.stack(frames)
    # backend.asarray uploads to, and the kernel wrapper launches on, the backend's GPU (cuda:N)
    x = backend.kernels.pnet_pyramid(backend.asarray(stack), sizes, offsets, ch, cw)
    return x, valid, offsets


def pnet_level_outputs(out: np.ndarray, pnet, levels, offsets) -> list[np.ndarray]:
    """Cut PNet's mosaic output into the output of each level.

    Parameters
    ----------
    out : (N, 6, ho, wo) float32
    pnet : CNNWeights
    levels, offsets : as for / from :func:`pnet_mosaic`

    Returns
    -------
    list of (N, 6, h_i, w_i) float32
        What PNet gives for each level run on its own (every level holds at least one PNet
        window, see :func:`pyramid_levels`).
    """
    result = []
    for (_, h, w), (oy, ox) in zip(levels, offsets):
        ho, wo = output_size(pnet, h, w)
        y0, x0 = oy // PNET_STRIDE, ox // PNET_STRIDE
        result.append(out[:, :, y0:y0 + ho, x0:x0 + wo])
    return result


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR from a BGR or grey frame (OpenFace's GRAY2RGB for grey); dtype kept."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) BGR or (H, W) grey image, got shape {image.shape}")
    return image


def _to_nchw_rgb(images_bgr: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) BGR -> (N, 3, H, W) RGB, contiguous."""
    return np.ascontiguousarray(images_bgr[..., ::-1].transpose(0, 3, 1, 2))


@dataclass
class _Candidates:
    """Boxes of one frame between stages."""

    boxes: np.ndarray  # (n, 4) float32
    scores: np.ndarray  # (n,) float32
    corrections: np.ndarray  # (n, 4) float32

    def subset(self, idx: np.ndarray) -> "_Candidates":
        return _Candidates(self.boxes[idx], self.scores[idx], self.corrections[idx])

    @staticmethod
    def concat(parts: "list[_Candidates]") -> "_Candidates":
        if not parts:
            return _Candidates(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 4), np.float32))
        return _Candidates(*(np.concatenate(a) for a in zip(*[(p.boxes, p.scores, p.corrections) for p in parts])))


class MTCNN:
    """OpenFace's MTCNN face detector (PNet -> RNet -> ONet), run by onnxruntime.

    Parameters
    ----------
    models : path-like, optional
        OpenFace model folder (see :func:`gpuau.models.store.resolve_models_dir`).
    device : str
        ``"cpu"`` (CPUExecutionProvider) or ``"cuda"``/``"cuda:N"`` (CUDAExecutionProvider when the
        installed onnxruntime has it; PNet's mosaic is then built on the GPU by ``pyramid.cu`` and
        bound in place); ``"auto"`` and ``"emulated"`` (the mosaic by the emulated kernel) as in
        :func:`gpuau.device.resolve_device`.
    min_face_size : int
        Smallest face searched for, px (OpenFace: 60).
    thresholds : (float, float, float)
        PNet, RNet, ONet face-probability thresholds (OpenFace: 0.6, 0.7, 0.7).
    """

    def __init__(self, models=None, device: str = "cpu", *, min_face_size: int = 60,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)):
        from gpuau.device import resolve_device

        backend = resolve_device(device)
        self.backend = backend
        self.weights: MTCNNWeights = load_mtcnn(models)
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)

        def session(net, size):
            return make_session(cnn_graph_file(net, size), backend.name, backend.device_id)

        self._pnet = session(self.weights.pnet, None)
        self._rnet = session(self.weights.rnet, (RNET_SIZE, RNET_SIZE))
        self._onet = session(self.weights.onet, (ONET_SIZE, ONET_SIZE))

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in one BGR (or grey) uint8 frame; see :class:`Detections`."""
        return self.detect_batch([image])[0]

    def detect_box(self, image: np.ndarray) -> "np.ndarray | None":
        """The box of the face FeatureExtraction tracks in one frame (``DetectSingleFaceMTCNN``), or None:
        :func:`select_box` of :meth:`detect`."""
        return select_box(self.detect(image))

    def detect_batch(self, images: "list[np.ndarray]", staged: "list | None" = None) -> list[Detections]:
        """Faces in each of several frames (any sizes), with one PNet run per frame size and one
        RNet and one ONet run for all frames; identical to calling :meth:`detect` on each.

        ``staged``, optional: per image, ``(stack, row)`` where row ``row`` of ``stack``, an
        ``(n, H, W, 3)`` uint8 BGR array already on the detector's device, holds the same pixels (e.g.
        :class:`gpuau.engine.FrameStaging`'s frames): the PNet pyramid is built from it instead of
        uploading the image again (RNet and ONet crop the host images).
        """
        frames = [_as_bgr(im) for im in images]
        cands = self._pnet_stage(frames, staged)
        cands = self._rnet_stage(frames, cands)
        return self._onet_stage(frames, cands)

    # -- stages -------------------------------------------------------------------------------

    def _pnet_stage(self, frames: list[np.ndarray], staged: "list | None" = None) -> list[_Candidates]:
        """PNet proposals, per-level and cross-level NMS, regression and squaring (``staged``: see
        :meth:`detect_batch`)."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault(f.shape[:2], []).append(i)
        per_level: list[list] = [[] for _ in frames]
        for (height, width), idx in groups.items():
            levels = pyramid_levels(height, width, self.min_face_size)
            if not levels:
                continue
            x, valid, offsets = pnet_mosaic(self._pnet_input(frames, staged, idx), levels, self.backend)
            out = run_session(self._pnet, {"input": x, "valid": valid}, self.backend)[0]
            for (scale, _, _), level_out in zip(levels, pnet_level_outputs(out, self.weights.pnet, levels, offsets)):
                for j, i in enumerate(idx):
                    prob = P.face_probability_map(level_out[j, :2])
                    boxes, scores, corr = P.generate_bounding_boxes(
                        prob, level_out[j, 2:6], scale, self.thresholds[0], FACE_SUPPORT, PNET_STRIDE)
                    keep = P.non_maximum_suppression(boxes, scores, PNET_LEVEL_NMS, minimum=False)
                    per_level[i].append(_Candidates(boxes[keep], scores[keep], corr[keep]))
        result = []
        for levels in per_level:
            c = _Candidates.concat(levels)
            c = c.subset(P.non_maximum_suppression(c.boxes, c.scores, PNET_NMS, minimum=False))
            result.append(_Candidates(P.rectify(P.apply_correction(c.boxes, c.corrections, False)), c.scores, c.corrections))
        return result

    def _pnet_input(self, frames: list, staged: "list | None", idx: list):
        """Frames ``idx`` (of one size) for :func:`pnet_mosaic`: rows of their staged device stack when
        they share one, else the host frames."""
        if staged is None or len({id(staged[i][0]) for i in idx}) != 1:
            return [frames[i] for i in idx]
        stack, rows = staged[idx[0]][0], [staged[i][1] for i in idx]
        return stack if rows == list(range(len(stack))) else stack[self.backend.asarray(np.array(rows, np.int64))]

    def _run_crops(self, net: str, frames: list[np.ndarray], cands: list[_Candidates]) -> list[np.ndarray]:
        """One network over the crops of every frame's boxes; per-frame outputs (n_i, K) float32."""
        session, size = (self._rnet, RNET_SIZE) if net == "rnet" else (self._onet, ONET_SIZE)
        crops = [P.crop_proposals(f, c.boxes, size) for f, c in zip(frames, cands)]
        counts = [len(c) for c in crops]
        total = sum(counts)
        if total == 0:
            return [np.zeros((0, 16), np.float32) for _ in frames]
        batch = _to_nchw_rgb(np.concatenate(crops))
        out = np.concatenate([session.run(None, {"input": batch[s:s + CROP_CHUNK]})[0]
                              for s in range(0, total, CROP_CHUNK)])
        return np.split(out, np.cumsum(counts)[:-1])

    def _rnet_stage(self, frames, cands: list[_Candidates]) -> list[_Candidates]:
        """RNet: rescore, threshold, NMS, regression, squaring."""
        result = []
        for c, out in zip(cands, self._run_crops("rnet", frames, cands)):
            c = _Candidates(c.boxes, P.face_probability(out[:, :2]), out[:, 2:6].astype(np.float32))
            c = c.subset(np.flatnonzero(c.scores >= np.float32(self.thresholds[1])))
            c = c.subset(P.non_maximum_suppression(c.boxes, c.scores, RNET_NMS, minimum=False))
            result.append(_Candidates(P.rectify(P.apply_correction(c.boxes, c.corrections, False)), c.scores, c.corrections))
        return result

    def _onet_stage(self, frames, cands: list[_Candidates]) -> list[Detections]:
        """ONet: rescore, threshold, regression (+1 px), NMS over the smaller area, CLNF correction."""
        result = []
        for c, out in zip(cands, self._run_crops("onet", frames, cands)):
            c = _Candidates(c.boxes, P.face_probability(out[:, :2]), out[:, 2:6].astype(np.float32))
            keep = np.flatnonzero(c.scores >= np.float32(self.thresholds[2]))
            c, out = c.subset(keep), out[keep]
            # Landmarks relative to the ONet crop (the squared box grown by one pixel).
            r = np.rint(c.boxes).astype(np.float64)
            points = np.stack([r[:, None, 0] + (r[:, None, 2] + 1) * out[:, 6:11],
                               r[:, None, 1] + (r[:, None, 3] + 1) * out[:, 11:16]], axis=2)
            boxes = P.apply_correction(c.boxes, c.corrections, True)
            nms = P.non_maximum_suppression(boxes, c.scores, ONET_NMS, minimum=True)
            result.append(Detections(P.clnf_box(boxes[nms]).astype(np.float64),
                                     c.scores[nms].astype(np.float64), points[nms]))
        return result
