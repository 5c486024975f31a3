"""ONNX graphs of OpenFace's MTCNN networks, built in code from the parsed ``.dat`` weights.

Port of CNN::Inference, FaceDetectorMTCNN.cpp (and the layer helpers of CNN_utils.cpp) to ONNX
operators.  The graphs compute exactly what OpenFace's forward pass computes:

* convolution: ``Conv`` (cross-correlation, stride 1, no padding, bias);
* PReLU: ``PRelu`` with one slope per channel;
* max pooling: OpenFace emits ``round((L - k) / s) + 1`` outputs and clips windows at the border.
  For the strides it uses (1 and 2) ``(L - k) / s`` is an integer or ends in .5, so this is ONNX's
  ``ceil_mode=1`` (whose extra window is clipped the same way);
* fully connected: a 1x1 ``Conv`` when the number of input maps equals the layer's input width
  (PNet's last layer), else ``Flatten`` + ``Gemm`` with the weight columns permuted from OpenFace's
  column-major per-map flatten (``c*H*W + x*H + y``) to NCHW order (``c*H*W + y*W + x``).

Outputs are raw: PNet ``(N, 6, H', W')``, RNet ``(N, 6)``, ONet ``(N, 16)`` (two class logits,
four box regressions, ONet's ten landmark coordinates); the face probability
``1 / (1 + exp(o0 - o1))`` is taken on the host exactly as OpenFace writes it.

PNet's graph takes a second input, ``valid`` ``(N|1, 1, H-2, W-2)`` bool, so that one run can cover
a mosaic of all pyramid levels of a frame: positions outside a level are set, before the first
max pooling, to a constant below any value the layer can produce, which makes every pooling
window at a level's border see exactly the clipped window OpenFace sees.

Graphs are written once into ``cache_dir()/onnx`` under a name keyed by the weights' sha256 (built in each process
where that folder cannot be written).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gpuau._atomic import atomic_write
from gpuau.models.cache import cache_dir
from gpuau.models.mtcnn_file import CNNLayer, CNNWeights

GRAPH_VERSION = 1
OPSET = 17
IR_VERSION = 8  # readable by onnxruntime >= 1.10


def _pool_output(length: int, kernel: int, stride: int) -> int:
    """OpenFace's pooled length, ``round((L - k) / s) + 1`` with C's round-half-away-from-zero."""
    return int(np.floor((length - kernel) / stride + 0.5)) + 1


def layer_output_size(net: CNNWeights, layer: CNNLayer, h: int, w: int) -> tuple[int, int]:
    """Feature map size after one layer in OpenFace's forward pass (per-pixel layers keep it)."""
    if layer.kind == "conv":
        kh, kw = net[f"{layer.key}/weight"].shape[2:]
        return h - kh + 1, w - kw + 1
    if layer.kind == "max_pool":
        kx, ky, sx, sy = (int(v) for v in net[f"{layer.key}/pool"])
        return _pool_output(h, ky, sy), _pool_output(w, kx, sx)
    return h, w


def output_size(net: CNNWeights, h: int, w: int) -> tuple[int, int]:
    """Size of a fully convolutional network's output map for an ``h x w`` input (may be <= 0)."""
    for layer in net.layers:
        h, w = layer_output_size(net, layer, h, w)
    return h, w


def pnet_mask_fill(net: CNNWeights) -> float:
    """A value below anything PNet's first convolution + PReLU can output for inputs in [-1, 1].

    Parameters
    ----------
    net : CNNWeights
        PNet (conv, PReLU, max pool, ...).

    Returns
    -------
    float
    """
    kinds = [layer.kind for layer in net.layers[:3]]
    if kinds != ["conv", "prelu", "max_pool"]:
        raise ValueError(f"{net.name}: expected conv, prelu, max_pool first, got {kinds}")
    conv, act = net.layers[0].key, net.layers[1].key
    w, b = net[f"{conv}/weight"], net[f"{conv}/bias"]
    bound = np.abs(w).sum(axis=(1, 2, 3)) + np.abs(b)
    slope = np.maximum(np.abs(net[f"{act}/slope"]), 1.0)
    return -float(np.ceil((bound * slope).max()) + 1.0)


def build_cnn_graph(net: CNNWeights, input_size: "tuple[int, int] | None"):
    """Build the ONNX model of one MTCNN network.

    Parameters
    ----------
    net : CNNWeights
    input_size : (int, int) or None
        ``(H, W)`` of the input crops (RNet 24x24, ONet 48x48); ``None`` for a fully
        convolutional graph with dynamic ``H, W`` and the ``valid`` mask input (PNet).

    Returns
    -------
    onnx.ModelProto
        Input ``input`` (N, 3, H, W) float32, normalised, RGB; output ``output``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    dynamic = input_size is None
    h, w = (None, None) if dynamic else input_size
    channels = 3
    x = "input"
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H" if dynamic else h, "W" if dynamic else w])]
    masked = not dynamic
    flat = False
    for i, layer in enumerate(net.layers):
        k, y = layer.key, f"l{i:02d}_{layer.kind}"
        if layer.kind == "conv":
            weight = net[f"{k}/weight"]
            nodes.append(helper.make_node("Conv", [x, const(f"{k}.weight", weight), const(f"{k}.bias", net[f"{k}/bias"])], [y]))
            channels = weight.shape[0]
        elif layer.kind == "prelu":
            slope = net[f"{k}/slope"]
            nodes.append(helper.make_node("PRelu", [x, const(f"{k}.slope", slope if flat else slope.reshape(-1, 1, 1))], [y]))
        elif layer.kind == "max_pool":
            kx, ky, sx, sy = (int(v) for v in net[f"{k}/pool"])
            if sx not in (1, 2) or sy not in (1, 2):
                raise ValueError(f"{net.name}: pooling stride {sx}x{sy}: OpenFace's rounding is only ceil_mode for strides 1, 2")
            if not masked:
                inputs.append(helper.make_tensor_value_info("valid", TensorProto.BOOL, ["Nm", 1, "Hc", "Wc"]))
                fill = const("mask_fill", np.array(pnet_mask_fill(net), np.float32))
                nodes.append(helper.make_node("Where", ["valid", x, fill], [f"{y}_masked"]))
                x, masked = f"{y}_masked", True
            nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=[ky, kx], strides=[sy, sx], ceil_mode=1))
        else:
            weight, bias = net[f"{k}/weight"], net[f"{k}/bias"]
            n_out, n_in = weight.shape
            if not flat and channels == n_in:  # per-pixel: a 1x1 convolution
                nodes.append(helper.make_node("Conv", [x, const(f"{k}.weight", weight[:, :, None, None]), const(f"{k}.bias", bias)], [y]))
                channels = n_out
            else:
                if not flat:
                    if dynamic:
                        raise ValueError(f"{net.name}: flattening fully connected layer needs a fixed input size")
                    # OpenFace's order c*H*W + x*H + y  ->  NCHW Flatten's c*H*W + y*W + x.
                    weight = weight.reshape(n_out, channels, w, h).transpose(0, 1, 3, 2).reshape(n_out, n_in)
                    nodes.append(helper.make_node("Flatten", [x], [f"{y}_flat"], axis=1))
                    x, flat = f"{y}_flat", True
                nodes.append(helper.make_node("Gemm", [x, const(f"{k}.weight", weight), const(f"{k}.bias", bias)], [y], transB=1))
                channels = n_out
        if not dynamic and not flat:
            h, w = layer_output_size(net, layer, h, w)
        x = y
    nodes.append(helper.make_node("Identity", [x], ["output"]))
    out_shape = ["N", channels] if flat else ["N", channels, "Ho", "Wo"]
    graph = helper.make_graph(nodes, net.name, inputs, [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="gpuau")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def cnn_graph_file(net: CNNWeights, input_size: "tuple[int, int] | None") -> "Path | bytes":
    """Path of the ONNX file of ``net`` in the cache folder, built and written on first use; the graph's bytes
    where the cache folder cannot be written (a read-only home or container: building it again costs ~0.1 s).

    Parameters
    ----------
    net : CNNWeights
    input_size : (int, int) or None
        See :func:`build_cnn_graph`.

    Returns
    -------
    pathlib.Path or bytes
    """
    size = "dyn" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    target = cache_dir() / "onnx" / f"{net.name}-{net.sha256[:16]}-{size}-g{GRAPH_VERSION}.onnx"
    if target.is_file():
        return target
    data = build_cnn_graph(net, input_size).SerializeToString()
    try:
        with atomic_write(target, "wb") as f:
            f.write(data)
    except OSError:
        return data
    return target
