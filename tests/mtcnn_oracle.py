"""Plain NumPy forward pass of OpenFace's MTCNN networks: the oracle for the ONNX graphs.

Port of CNN::Inference and its helpers (convolution_direct_blas, max_pooling, fully_connected,
PReLU), FaceDetectorMTCNN.cpp and CNN_utils.cpp, written for clarity rather than speed.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gpuau.models.mtcnn_file import CNNWeights


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Valid cross-correlation, stride 1.

    Parameters
    ----------
    x : (N, C, H, W) float32
    weight : (K, C, kh, kw) float32
    bias : (K,) float32

    Returns
    -------
    (N, K, H-kh+1, W-kw+1) float32
    """
    kh, kw = weight.shape[2:]
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))  # (N, C, H', W', kh, kw)
    return (np.einsum("ncyxij,kcij->nkyx", win, weight, optimize=True) + bias[None, :, None, None]).astype(np.float32)


def max_pool(x: np.ndarray, kernel_x: int, kernel_y: int, stride_x: int, stride_y: int) -> np.ndarray:
    """OpenFace's max pooling: ``round((L - k) / s) + 1`` outputs, windows clipped at the border.

    Port of max_pooling, CNN_utils.cpp.

    Parameters
    ----------
    x : (N, C, H, W) float32

    Returns
    -------
    (N, C, H_out, W_out) float32
    """
    h, w = x.shape[2:]
    # C's round() rounds halves away from zero; the operands are non-negative here.
    out_x = int(np.floor((w - kernel_x) / stride_x + 0.5)) + 1
    out_y = int(np.floor((h - kernel_y) / stride_y + 0.5)) + 1
    out = np.empty(x.shape[:2] + (out_y, out_x), np.float32)
    for oy in range(out_y):
        y = oy * stride_y
        for ox in range(out_x):
            xs = ox * stride_x
            out[:, :, oy, ox] = x[:, :, y:min(h, y + kernel_y), xs:min(w, xs + kernel_x)].max(axis=(2, 3))
    return out


def prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Per-channel parametric ReLU (channel axis 1), ``x >= 0 ? x : x * slope``."""
    s = slope.reshape((1, -1) + (1,) * (x.ndim - 2))
    return np.where(x >= 0, x, x * s).astype(np.float32)


def fully_connected(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """OpenFace's fully connected layer.

    Port of fully_connected, CNN_utils.cpp: when the number of input maps equals the layer's input
    width, the layer acts on every pixel (a 1x1 convolution); otherwise each map is flattened
    column-major (feature index ``c * H * W + x * H + y``) and the maps are concatenated.

    Parameters
    ----------
    x : (N, C, H, W) or (N, F) float32
    weight : (K, F) float32
    bias : (K,) float32

    Returns
    -------
    (N, K, H, W) in the per-pixel case, else (N, K) float32
    """
    if x.ndim == 4 and x.shape[1] == weight.shape[1]:
        return (np.einsum("kc,ncyx->nkyx", weight, x) + bias[None, :, None, None]).astype(np.float32)
    if x.ndim == 4:
        x = x.transpose(0, 1, 3, 2).reshape(x.shape[0], -1)  # per map: index x * H + y
    return (x @ weight.T + bias).astype(np.float32)


def cnn_forward(net: CNNWeights, x: np.ndarray) -> np.ndarray:
    """Run one of OpenFace's MTCNN networks.

    Port of CNN::Inference, FaceDetectorMTCNN.cpp.

    Parameters
    ----------
    net : CNNWeights
    x : (N, 3, H, W) float32
        Normalised ``(pixel - 127.5) * 0.0078125`` input in RGB channel order (OpenFace flips the
        BGR image it is given).

    Returns
    -------
    (N, 6, H', W') for PNet, (N, 6) for RNet, (N, 16) for ONet, float32 logits / regressions
    """
    x = np.asarray(x, np.float32)
    for layer in net.layers:
        k = layer.key
        if layer.kind == "conv":
            x = conv2d(x, net[f"{k}/weight"], net[f"{k}/bias"])
        elif layer.kind == "prelu":
            x = prelu(x, net[f"{k}/slope"])
        elif layer.kind == "max_pool":
            x = max_pool(x, *(int(v) for v in net[f"{k}/pool"]))
        else:
            x = fully_connected(x, net[f"{k}/weight"], net[f"{k}/bias"])
    return x
