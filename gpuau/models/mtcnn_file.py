"""Parser of OpenFace's binary CNN format (``model/mtcnn_detector/{PNet,RNet,ONet}.dat``).

Port of CNN::Read and FaceDetectorMTCNN::Read, FaceDetectorMTCNN.cpp.

File layout (little-endian, every integer ``int32``, every matrix an OpenCV ``ReadMatBin`` record
``rows, cols, type`` followed by ``rows*cols`` ``float32`` values in row-major order)::

    depth
    depth x { layer_type, body }
      0 convolution:  n_in, n_out, n_out biases, then n_in x n_out kernel matrices (input-major)
      1 max pooling:  kernel_x, kernel_y, stride_x, stride_y
      2 fully connected: bias matrix (n_out, 1), weight matrix (n_in, n_out)
      3 PReLU:        slope matrix (n, 1)

Kernels are applied as cross-correlation (no flip) with ``kernel[y, x]``, stride 1, no padding, so
the ``(n_out, n_in, kh, kw)`` arrays below are directly the weights of an NCHW ``Conv``.
Fully connected weights are returned as OpenFace uses them, ``(n_out, n_in)`` (the file stores the
transpose).  OpenFace flattens feature maps column-major per map before a fully connected layer;
that ordering is the consumer's business (see :mod:`gpuau.detect.onnx_graphs`).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpuau.models.cache import load_cached
from gpuau.models.opencv_matrix import BinaryReader
from gpuau.models.store import LANDMARK_DIR, model_file

MTCNN_DIR = f"{LANDMARK_DIR}/mtcnn_detector"
NETWORKS = ("PNet", "RNet", "ONet")

CONV, MAX_POOL, FULLY_CONNECTED, PRELU = 0, 1, 2, 3
LAYER_KINDS = {CONV: "conv", MAX_POOL: "max_pool", FULLY_CONNECTED: "fc", PRELU: "prelu"}


def parse_mtcnn_cnn(path: "str | os.PathLike") -> dict[str, np.ndarray]:
    """Read one of OpenFace's MTCNN CNN files into flat arrays.

    Port of CNN::Read, FaceDetectorMTCNN.cpp.

    Parameters
    ----------
    path : path-like
        ``PNet.dat``, ``RNet.dat`` or ``ONet.dat``.

    Returns
    -------
    dict[str, numpy.ndarray]
        ``"layer_types"`` : (L,) int32, OpenFace's layer codes (0 conv, 1 max pool, 2 fc, 3 PReLU);
        for layer ``i`` (two-digit index, e.g. ``"03"``):
        ``"{i}/weight"`` (n_out, n_in, kh, kw) float32 and ``"{i}/bias"`` (n_out,) for convolutions;
        ``"{i}/pool"`` (4,) int32 ``kernel_x, kernel_y, stride_x, stride_y`` for max pooling;
        ``"{i}/weight"`` (n_out, n_in) and ``"{i}/bias"`` (n_out,) for fully connected layers;
        ``"{i}/slope"`` (n,) float32 for PReLU;
        ``"sha256"`` : () str, digest of the file (keys the generated ONNX graphs).
    """
    path = Path(path)
    data = path.read_bytes()
    r = BinaryReader(data, path)
    depth = r.int32()
    if not 0 < depth < 64:
        raise ValueError(f"{path}: implausible network depth {depth}")
    types = np.empty(depth, np.int32)
    out: dict[str, np.ndarray] = {}
    for i in range(depth):
        t = types[i] = r.int32()
        key = f"{i:02d}"
        if t == CONV:
            n_in, n_out = r.int32(), r.int32()
            out[f"{key}/bias"] = r.scalars(np.float32, n_out)
            kernels = [[r.matrix(np.float32) for _ in range(n_out)] for _ in range(n_in)]
            # kernels[in][out] -> (n_out, n_in, kh, kw)
            out[f"{key}/weight"] = np.ascontiguousarray(np.array(kernels, np.float32).transpose(1, 0, 2, 3))
        elif t == MAX_POOL:
            out[f"{key}/pool"] = np.array([r.int32() for _ in range(4)], np.int32)
        elif t == FULLY_CONNECTED:
            out[f"{key}/bias"] = r.matrix(np.float32).reshape(-1)
            out[f"{key}/weight"] = np.ascontiguousarray(r.matrix(np.float32).T)
        elif t == PRELU:
            out[f"{key}/slope"] = r.matrix(np.float32).reshape(-1)
        else:
            raise ValueError(f"{path}: unknown layer type {t} at layer {i}")
    r.expect_end(f"{depth} layers")
    out["layer_types"] = types
    out["sha256"] = np.array(hashlib.sha256(data).hexdigest())
    return out


@dataclass(frozen=True)
class CNNLayer:
    """One layer of an OpenFace CNN.

    Attributes
    ----------
    kind : str
        ``"conv"``, ``"max_pool"``, ``"fc"`` or ``"prelu"``.
    key : str
        Prefix of the layer's arrays in :attr:`CNNWeights.arrays` (``"03"`` -> ``"03/weight"``).
    """

    kind: str
    key: str


@dataclass(frozen=True)
class CNNWeights:
    """A parsed network: its layer sequence and arrays (see :func:`parse_mtcnn_cnn`)."""

    name: str
    layers: tuple[CNNLayer, ...]
    arrays: dict
    sha256: str

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    @classmethod
    def from_arrays(cls, name: str, arrays: dict) -> "CNNWeights":
        layers = tuple(CNNLayer(LAYER_KINDS[int(t)], f"{i:02d}") for i, t in enumerate(arrays["layer_types"]))
        return cls(name, layers, arrays, str(arrays["sha256"]))


@dataclass(frozen=True)
class MTCNNWeights:
    """OpenFace's three MTCNN stages."""

    pnet: CNNWeights
    rnet: CNNWeights
    onet: CNNWeights


def load_mtcnn(models: "str | os.PathLike | None" = None) -> MTCNNWeights:
    """Parse (or load from the cache) ``PNet.dat``, ``RNet.dat`` and ``ONet.dat``.

    Port of FaceDetectorMTCNN::Read, FaceDetectorMTCNN.cpp (which reads the same three files named
    by ``MTCNN_detector.txt``).
    """
    nets = {}
    for name in NETWORKS:
        arrays = load_cached(model_file(f"{MTCNN_DIR}/{name}.dat", models), parse_mtcnn_cnn)
        nets[name.lower()] = CNNWeights.from_arrays(name, arrays)
    return MTCNNWeights(**nets)
