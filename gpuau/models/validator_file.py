"""Parser of OpenFace's CNN landmark detection validator (``detection_validation/validator_cnn.txt``).

The file is binary, little-endian: ``int32`` validator type (3 = CNN), ``int32`` number of views,
then per view its orientation (a 1x3 matrix, degrees), then per view: the mean and standard
deviation of the normalised warped face (1 x n_pixels), the network (``int32`` depth, then per layer
an ``int32`` type and its weights) and the view's piece-wise affine warp (PAW).  Matrices are
``int32 rows, int32 cols, int32 OpenCV type`` followed by the row-major data.

Port of ``DetectionValidator::Read``, LandmarkDetectionValidator.cpp, ``PAW::Read``, PAW.cpp (matrices
read by :mod:`gpuau.models.opencv_matrix`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpuau.models.cache import load_cached
from gpuau.models.opencv_matrix import BinaryReader
from gpuau.models.store import LANDMARK_DIR, model_file

VALIDATOR_FILE = f"{LANDMARK_DIR}/detection_validation/validator_cnn.txt"

# Layer type codes of the validator's network.
CONV, MAX_POOL, FULLY_CONNECTED, RELU, SIGMOID = 0, 1, 2, 3, 4

def parse_validator(path: "str | os.PathLike") -> "dict[str, np.ndarray]":
    """Parse a CNN detection validator file into flat arrays.

    Parameters
    ----------
    path : path-like
        ``.../model/detection_validation/validator_cnn.txt``.

    Returns
    -------
    dict
        ``orientations`` (V, 3) float64, radians (pitch, yaw, roll) of the view centres.
        Per view ``v``, keys prefixed ``view{v}/``:

        * ``mean``, ``std`` (n_pixels,) float32: global normalisation of the warped face, in the
          column-major order of the PAW's pixel mask.
        * ``layer_types`` (L,) int32: ``CONV``, ``MAX_POOL``, ``FULLY_CONNECTED``, ``RELU``, ``SIGMOID``.
        * ``conv{c}/kernels`` (n_in, n_out, kh, kw) float32 and ``conv{c}/biases`` (n_out,) float32,
          cross-correlation kernels of the c-th convolutional layer.
        * ``fc{f}/weights`` (n_in, n_out) float32 and ``fc{f}/biases`` (n_out,) float32.
        * ``paw/min_xy`` (2,) float32,
          ``paw/destination_landmarks`` (2n,) float32 (all x then all y), ``paw/triangulation``
          (T, 3) int32, ``paw/triangle_id`` (h, w) int32 (-1 outside the face), ``paw/pixel_mask``
          (h, w) uint8, ``paw/alpha``, ``paw/beta`` (T, 3) float32.
    """
    r = BinaryReader(Path(path).read_bytes(), path)
    validator_type = r.int32()
    if validator_type != 3:
        raise ValueError(f"{path}: validator type {validator_type} is not the CNN validator (3)")
    n_views = r.int32()
    out: "dict[str, np.ndarray]" = {
        "orientations": np.stack([r.matrix().reshape(3).astype(np.float64) for _ in range(n_views)]) * np.pi / 180.0
    }
    for v in range(n_views):
        p = f"view{v}/"
        out[p + "mean"] = r.matrix().astype(np.float32).reshape(-1)
        out[p + "std"] = r.matrix().astype(np.float32).reshape(-1)
        layer_types = np.array([0] * r.int32(), dtype=np.int32)
        n_conv = n_fc = 0
        for layer in range(layer_types.size):
            layer_types[layer] = r.int32()
            if layer_types[layer] == CONV:
                n_in, n_out = r.int32(), r.int32()
                out[f"{p}conv{n_conv}/biases"] = r.scalars(np.float32, n_out)
                out[f"{p}conv{n_conv}/kernels"] = np.stack(
                    [np.stack([r.matrix().astype(np.float32) for _ in range(n_out)]) for _ in range(n_in)]
                )
                n_conv += 1
            elif layer_types[layer] == FULLY_CONNECTED:
                out[f"{p}fc{n_fc}/biases"] = r.matrix().astype(np.float32).reshape(-1)
                out[f"{p}fc{n_fc}/weights"] = r.matrix().astype(np.float32)
                n_fc += 1
        out[p + "layer_types"] = layer_types
        number_of_pixels = r.int32()
        out[p + "paw/min_xy"] = r.scalars(np.float64, 2).astype(np.float32)
        out[p + "paw/destination_landmarks"] = r.matrix().astype(np.float32).reshape(-1)
        out[p + "paw/triangulation"] = r.matrix().astype(np.int32)
        out[p + "paw/triangle_id"] = r.matrix().astype(np.int32)
        out[p + "paw/pixel_mask"] = r.matrix().astype(np.uint8)
        if np.count_nonzero(out[p + "paw/pixel_mask"]) != number_of_pixels:
            raise ValueError(f"{path}: view {v}'s PAW mask does not have its {number_of_pixels} pixels")
        out[p + "paw/alpha"] = r.matrix().astype(np.float32)
        out[p + "paw/beta"] = r.matrix().astype(np.float32)
    r.expect_end("the last view")
    return out


@dataclass(frozen=True)
class PAWModel:
    """A piece-wise affine warp onto a fixed destination shape (the fields of OpenFace's PAW).

    Attributes
    ----------
    destination_landmarks : ndarray (n, 2) float32
        ``(x, y)`` of each landmark.
    triangulation : ndarray (T, 3) int32
    triangle_id : ndarray (h, w) int32
        Triangle covering each destination pixel, -1 outside the face.
    pixel_mask : ndarray (h, w) uint8
        1 inside the face.
    alpha, beta : ndarray (T, 3) float32
        Barycentric coefficients of each destination triangle.
    min_x, min_y : float
        Destination coordinates of pixel (0, 0).
    """

    destination_landmarks: np.ndarray
    triangulation: np.ndarray
    triangle_id: np.ndarray
    pixel_mask: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    min_x: float
    min_y: float

    @property
    def number_of_pixels(self) -> int:
        return int(np.count_nonzero(self.pixel_mask))


@dataclass(frozen=True)
class ValidatorLayer:
    """One layer of a validator network.

    Attributes
    ----------
    kind : int
        ``CONV``, ``MAX_POOL``, ``FULLY_CONNECTED``, ``RELU`` or ``SIGMOID``.
    weights : ndarray or None
        ``CONV``: (n_out, n_in, kh, kw) float32 cross-correlation kernels (C-contiguous, as
        :func:`gpuau.cpu.validator_cnn.convolution` reads them); ``FULLY_CONNECTED``: (n_in, n_out)
        float32.
    biases : ndarray or None
        (n_out,) float32.
    """

    kind: int
    weights: "np.ndarray | None" = None
    biases: "np.ndarray | None" = None


@dataclass(frozen=True)
class ValidatorView:
    """The validator of one head orientation: normalisation, network and warp.

    Attributes
    ----------
    mean, std : ndarray (n_pixels,) float32
        Global normalisation of the warped face (column-major order of ``paw.pixel_mask``).
    layers : tuple of ValidatorLayer
    paw : PAWModel
    """

    mean: np.ndarray
    std: np.ndarray
    layers: "tuple[ValidatorLayer, ...]"
    paw: PAWModel


@dataclass(frozen=True)
class ValidatorModel:
    """The CNN detection validator: one :class:`ValidatorView` per orientation.

    Attributes
    ----------
    orientations : ndarray (V, 3) float64
        View centres, radians (pitch, yaw, roll).
    views : tuple of ValidatorView
    """

    orientations: np.ndarray
    views: "tuple[ValidatorView, ...]"


def validator_from_arrays(arrays: "dict[str, np.ndarray]") -> ValidatorModel:
    """Assemble a :class:`ValidatorModel` from :func:`parse_validator`'s flat arrays."""
    views = []
    for v in range(arrays["orientations"].shape[0]):
        p = f"view{v}/"
        layers, n_conv, n_fc = [], 0, 0
        for kind in arrays[p + "layer_types"].tolist():
            if kind == CONV:
                kernels = np.ascontiguousarray(arrays[f"{p}conv{n_conv}/kernels"].transpose(1, 0, 2, 3))
                layers.append(ValidatorLayer(kind, kernels, arrays[f"{p}conv{n_conv}/biases"]))
                n_conv += 1
            elif kind == FULLY_CONNECTED:
                layers.append(ValidatorLayer(kind, arrays[f"{p}fc{n_fc}/weights"], arrays[f"{p}fc{n_fc}/biases"]))
                n_fc += 1
            else:
                layers.append(ValidatorLayer(kind))
        min_xy = arrays[p + "paw/min_xy"]
        paw = PAWModel(
            destination_landmarks=arrays[p + "paw/destination_landmarks"].reshape(2, -1).T.copy(),
            triangulation=arrays[p + "paw/triangulation"],
            triangle_id=arrays[p + "paw/triangle_id"],
            pixel_mask=arrays[p + "paw/pixel_mask"],
            alpha=arrays[p + "paw/alpha"],
            beta=arrays[p + "paw/beta"],
            min_x=float(min_xy[0]),
            min_y=float(min_xy[1]),
        )
        views.append(ValidatorView(arrays[p + "mean"], arrays[p + "std"], tuple(layers), paw))
    return ValidatorModel(arrays["orientations"], tuple(views))


def load_validator(models: "str | os.PathLike | None" = None) -> ValidatorModel:
    """Load (through the parsed-model cache) the validator that ``main_clnf_general.txt`` names.

    Parameters
    ----------
    models : path-like, optional
        OpenFace model folder; defaults to ``$GPUAU_MODELS``.
    """
    return validator_from_arrays(load_cached(model_file(VALIDATOR_FILE, models), parse_validator))
