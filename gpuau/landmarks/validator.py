"""CNN landmark detection validator: how much a fitted landmark shape looks like a face.

The face inside the landmarks is warped onto the nearest view's mean shape (60 x 60 piece-wise
affine warp), normalised, and classified by a small CNN whose 30 outputs quantise an alignment
error in [-1, 1]; the arg-max bin becomes the detection certainty in (0, 1).  The tracker calls
:meth:`DetectionValidator.check` after each fit and :func:`detection_outcome` to turn the certainty
into the frame's ``success`` and the CSV's ``confidence``.

What the tracker must keep from ``DetectLandmarksInVideo`` (LandmarkDetectorFunc.cpp) around it:

* every ``CLNF::DetectLandmarks`` call (tracking, and each rotation hypothesis of a re-detection)
  validates its own fit; a re-detection keeps the hypothesis of highest model likelihood together
  with that hypothesis's certainty and success;
* a failed re-detection on a face already tracked restores the previous parameters and landmarks
  but not the certainty: the frame's ``confidence`` is the failed hypothesis's, ``success`` is 0;
* on a first detection (tracking not initialised) the returned ``success`` is 1 whatever the
  validator said, while the model's own ``detection_success`` (used by the AU stage and for the
  next frame's search window) stays the validated one.

Port of ``DetectionValidator``, LandmarkDetectionValidator.cpp, with the layers of CNN_utils.cpp.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from gpuau._kept import kept_with
from gpuau.device import Backend, resolve_device
from gpuau.landmarks.paw import warp_coefficients
from gpuau.models.validator_file import (
    CONV,
    FULLY_CONNECTED,
    MAX_POOL,
    RELU,
    SIGMOID,
    ValidatorLayer,
    ValidatorModel,
    ValidatorView,
    load_validator,
)

_F = np.float32

#: ``FaceModelParameters::validation_boundary``, LandmarkDetectorParameters.cpp: a fit whose
#: certainty is not above it is a tracking failure.
VALIDATION_BOUNDARY = 0.725


def select_view(orientations: np.ndarray, orientation) -> int:
    """Index of the view centre nearest (Euclidean, in radians) to a head orientation.

    Port of ``DetectionValidator::GetViewId``, LandmarkDetectionValidator.cpp (first minimum wins).

    Parameters
    ----------
    orientations : ndarray (V, 3)
        View centres (pitch, yaw, roll).
    orientation : array_like (3,)
        PDM rotation ``params_global[1:4]``.
    """
    d = np.linalg.norm(np.asarray(orientations, dtype=np.float64) - np.asarray(orientation, dtype=np.float64), axis=1)
    return int(np.argmin(d))


def validator_roi(landmarks: np.ndarray, image_shape: "tuple[int, int]") -> "tuple[tuple[int, int, int, int], np.ndarray]":
    """Image region the validator reads (the landmarks' box grown by 3 px, clipped to the image) and the
    landmarks in its coordinates.

    Port of the region selection in ``DetectionValidator::Check``, LandmarkDetectionValidator.cpp.

    Parameters
    ----------
    landmarks : ndarray (n, 2) float32
    image_shape : (H, W)

    Returns
    -------
    region : (left, top, width, height) int
        ``image[top:top + height, left:left + width]`` (the box's last row and column are excluded); a
        width or height below 2 leaves the face unvalidated.
    local : ndarray (n, 2) float32
        ``landmarks`` less ``(left, top)``.
    """
    lm = np.asarray(landmarks, dtype=_F)
    lo = lm.min(axis=0) - _F(3.0)
    hi = lm.max(axis=0) + _F(3.0)
    min_x, min_y = (max(int(v), 0) for v in lo)  # int() truncates towards zero, as the C++ cast
    max_x, max_y = min(int(hi[0]), image_shape[1] - 1), min(int(hi[1]), image_shape[0] - 1)
    return (min_x, min_y, max_x - min_x, max_y - min_y), lm - np.array([min_x, min_y], dtype=_F)


def flatten_maps(maps: np.ndarray) -> np.ndarray:
    """Feature maps as the vector a fully connected layer reads: map by map, each column-major.

    Port of the concatenation in ``fully_connected``, CNN_utils.cpp.

    Parameters
    ----------
    maps : ndarray (..., C, H, W)

    Returns
    -------
    ndarray (..., C * H * W)
    """
    return maps.swapaxes(-1, -2).reshape(*maps.shape[:-3], -1)


def cnn_forward(image: np.ndarray, layers: "tuple[ValidatorLayer, ...]", backend="cpu") -> np.ndarray:
    """Run the validator network on normalised warped faces.

    Port of the layer loop of ``DetectionValidator::CheckCNN``, LandmarkDetectionValidator.cpp,
    with ``fully_connected`` of CNN_utils.cpp.  The layers go through ``backend.kernels`` (Numba on
    the CPU, ``validator_cnn.cu`` on a GPU: the same bits).

    Parameters
    ----------
    image : ndarray (..., h, w) float32
        One face, or a batch along leading axes (on the backend's device, or the host).
    layers : tuple of ValidatorLayer
    backend : str or Backend

    Returns
    -------
    ndarray (..., bins) float32
        Scores of the quantised alignment-error bins, on the backend's device.
    """
    backend = resolve_device(backend)
    xp = backend.xp
    img = backend.asarray(image, dtype=_F)
    lead = img.shape[:-2]
    x = img.reshape(-1, 1, *img.shape[-2:])
    spatial = True
    for layer in layers:
        if layer.kind == CONV:
            x = backend.kernels.convolution(x, *_layer_arrays(layer, backend))
        elif layer.kind == MAX_POOL:
            x = backend.kernels.max_pooling(x)
        elif layer.kind == FULLY_CONNECTED:
            if spatial:
                x, spatial = flatten_maps(x), False
            x = backend.kernels.fully_connected(x, *_layer_arrays(layer, backend))
        elif layer.kind == RELU:
            x = xp.maximum(x, _F(0))
        elif layer.kind == SIGMOID:
            x = _F(1) / (_F(1) + xp.exp(-x))
        else:
            raise ValueError(f"unknown validator layer type {layer.kind}")
    return x.reshape(*lead, *x.shape[1:])


def _layer_arrays(layer: ValidatorLayer, backend: Backend) -> tuple:
    """A layer's weights and biases on the backend's device (copied there once; the arrays
    themselves on the CPU backend)."""
    if backend.xp is np:
        return layer.weights, layer.biases
    return kept_with(layer, (_layer_arrays, backend),
                     lambda: (backend.asarray(layer.weights), backend.asarray(layer.biases)))


def face_rank(mask: np.ndarray) -> np.ndarray:
    """Index of each pixel of a view's face mask in column-major order (the order of the view's
    ``mean`` and ``std`` and of ``NormaliseWarpedToVector``), -1 outside the mask.

    Parameters
    ----------
    mask : ndarray (h, w)

    Returns
    -------
    ndarray (h, w) int32
    """
    inside = np.asarray(mask).astype(bool)
    rank = np.full(inside.shape, -1, np.int32)
    rank.T[inside.T] = np.arange(np.count_nonzero(inside), dtype=np.int32)
    return rank


def _view_arrays(view: ValidatorView, backend: Backend) -> tuple:
    """``(triangle_id, min_x, min_y, rank, mean, std)`` of a view for ``validator_faces``, on the backend's
    device (computed and copied there once)."""
    def make():
        paw = view.paw
        return (backend.asarray(np.ascontiguousarray(paw.triangle_id, np.int32)), float(paw.min_x), float(paw.min_y),
                backend.asarray(face_rank(paw.pixel_mask)), backend.asarray(view.mean), backend.asarray(view.std))

    return kept_with(view, (_view_arrays, backend), make)


def _frame_stacks(grays: list, backend: Backend) -> list:
    """``(stack, row)`` of each face's grey frame: the distinct frames of each size stacked on the
    backend's device (one frame: a view of it on the CPU)."""
    distinct: dict = {}  # id(frame) -> (shape, row)
    by_shape: dict = {}
    for g in grays:
        if id(g) not in distinct:
            frames = by_shape.setdefault(g.shape, [])
            distinct[id(g)] = (g.shape, len(frames))
            frames.append(g)
    stacks = {shape: backend.asarray(frames[0][None] if len(frames) == 1 else np.stack(frames))
              for shape, frames in by_shape.items()}
    return [(stacks[distinct[id(g)][0]], distinct[id(g)][1]) for g in grays]


def certainty_from_scores(scores: np.ndarray) -> np.ndarray:
    """Detection certainty from the network's bin scores.

    The arg-max bin (first maximum) is un-quantised to its centre in [-1, 1], ``e``, and the
    certainty is ``0.5 * (1 - e)``: bin 0 gives 59/60, the last bin 1/60.
    Port of the end of ``DetectionValidator::CheckCNN`` and of ``DetectionValidator::Check``,
    LandmarkDetectionValidator.cpp.

    Parameters
    ----------
    scores : ndarray (..., bins)

    Returns
    -------
    ndarray (...) float32
        Rounded to float32, as ``Check`` returns it.
    """
    step = 2.0 / scores.shape[-1]
    unquantised = -1.0 + step / 2.0 + np.argmax(scores, axis=-1) * step
    return (0.5 * (1.0 - unquantised)).astype(_F)


def detection_outcome(fit_success: bool, certainty: "float | None", *, validate: bool = True, boundary: float = VALIDATION_BOUNDARY) -> "tuple[bool, float]":
    """A fit's ``detection_success`` and ``detection_certainty``.

    With validation on and a converged fit, the certainty is the validator's and success means
    ``certainty > boundary``; otherwise success is the fit's and the certainty 1 or 0.
    The CSV's ``confidence`` column is this certainty (FeatureExtraction writes
    ``detection_certainty``, 2 decimals).  Port of the end of ``CLNF::DetectLandmarks``,
    LandmarkDetectorModel.cpp.

    Parameters
    ----------
    fit_success : bool
        ``CLNF::Fit``'s result.
    certainty : float or None
        :meth:`DetectionValidator.check` of the fitted landmarks (needed when validating a
        successful fit; ignored otherwise).
    validate : bool
        ``FaceModelParameters::validate_detections`` (on in FeatureExtraction).
    boundary : float
        ``FaceModelParameters::validation_boundary``.

    Returns
    -------
    (success, certainty) : (bool, float)
    """
    if validate and fit_success:
        if certainty is None:
            raise ValueError("a validated successful fit needs the validator's certainty")
        return bool(certainty > boundary), float(certainty)
    return bool(fit_success), 1.0 if fit_success else 0.0


@dataclass(frozen=True)
class DetectionValidator:
    """The CNN landmark detection validator (``DetectionValidator``, LandmarkDetectionValidator.cpp).

    Attributes
    ----------
    model : ValidatorModel
    backend : Backend
        Where each face is warped and normalised and the network runs.
    """

    model: ValidatorModel
    backend: Backend = field(default_factory=lambda: resolve_device("cpu"))

    @classmethod
    def load(cls, models: "str | os.PathLike | None" = None, device="cpu") -> "DetectionValidator":
        """Load ``detection_validation/validator_cnn.txt`` from the OpenFace model folder; the validator
        runs on ``device``."""
        return cls(load_validator(models), resolve_device(device))

    def view_id(self, orientation) -> int:
        """View used for a head orientation (pitch, yaw, roll), see :func:`select_view`."""
        return select_view(self.model.orientations, orientation)

    def check(self, gray: np.ndarray, landmarks_2d: np.ndarray, orientation) -> float:
        """Certainty that ``landmarks_2d`` sit on a face in ``gray``.

        Port of ``DetectionValidator::Check``, LandmarkDetectionValidator.cpp.

        Parameters
        ----------
        gray : ndarray (H, W) uint8
            The frame in grey levels.
        landmarks_2d : ndarray (68, 2)
            Fitted landmarks ``(x, y)`` in image pixels.
        orientation : array_like (3,)
            PDM rotation ``params_global[1:4]`` (pitch, yaw, roll), radians.

        Returns
        -------
        float
            In (0, 1): ``1 - (2 k + 1) / 60`` for the network's arg-max bin ``k``; 0 when the
            landmarks' region has no pixels in the image.
        """
        return float(self.check_batch([gray], [landmarks_2d], [orientation])[0])

    def check_batch(self, grays, landmarks_2d, orientations, staged=None) -> np.ndarray:
        """:meth:`check` of several faces (of one or several frames): the faces of one view and frame
        size warped and normalised in one ``validator_faces`` call and run through the network together
        (:func:`cnn_forward` computes each face exactly as alone), all on the backend's device.

        Parameters
        ----------
        grays : sequence of ndarray (H, W) uint8
            Each face's frame (the same array may repeat).
        landmarks_2d : sequence of ndarray (68, 2)
        orientations : sequence of array_like (3,)
        staged : sequence of (stack, row), optional
            Each face's frame already on the backend's device: a ``(B, H, W)`` grey stack (uint8 or
            float32) and the frame's row in it (the engine's staged frames); default: the ``grays``,
            stacked and copied there.

        Returns
        -------
        ndarray (n,) float32
            Each face's certainty, as :meth:`check` returns it.
        """
        out = np.zeros(len(grays), _F)
        frames = _frame_stacks(grays, self.backend) if staged is None else staged
        groups: dict = {}  # (view, frame stack) -> faces: (index, row, region, landmarks in the region)
        stacks: dict = {}
        for i, (gray, lm, orientation) in enumerate(zip(grays, landmarks_2d, orientations)):
            region, local = validator_roi(lm, gray.shape)
            if region[2] <= 1 or region[3] <= 1:
                continue
            stack, row = frames[i]
            stacks[id(stack)] = stack
            groups.setdefault((self.view_id(orientation), id(stack)), []).append((i, row, region, local))
        for (v, key), faces in groups.items():
            view = self.model.views[v]
            inputs = self.backend.kernels.validator_faces(
                stacks[key], np.array([f[1] for f in faces]), np.array([f[2] for f in faces]),
                warp_coefficients(view.paw, np.stack([f[3] for f in faces])), *_view_arrays(view, self.backend))
            scores = cnn_forward(inputs, view.layers, self.backend)
            out[[f[0] for f in faces]] = certainty_from_scores(self.backend.asnumpy(scores))
        return out
