"""onnxruntime sessions for the MTCNN graphs (onnxruntime is imported here, lazily)."""
from __future__ import annotations

import os
from pathlib import Path


class DetectorError(RuntimeError):
    """The face detector cannot run; the message says why and what to do."""


def check_onnxruntime_install() -> None:
    """Fail clearly when onnxruntime is missing or when its CPU and GPU builds are both installed
    (they share the ``onnxruntime`` module, and whichever was installed last silently wins).

    Raises
    ------
    DetectorError
    """
    from importlib import metadata

    present = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
            present.append(dist)
        except metadata.PackageNotFoundError:
            pass
    if len(present) == 2:
        raise DetectorError(
            "both 'onnxruntime' and 'onnxruntime-gpu' are installed; they provide the same module and "
            "conflict. Keep one: on a GPU machine `pip uninstall -y onnxruntime onnxruntime-gpu && "
            "pip install onnxruntime-gpu` (gpuau[cuda12]); on a CPU machine `pip uninstall -y "
            "onnxruntime-gpu` (gpuau[cpu])."
        )
    if not present:
        raise DetectorError("onnxruntime is not installed: `pip install gpuau[cpu]` (or gpuau[cuda12] on a GPU machine)")


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_session(path: "str | os.PathLike", backend_name: str, device_id: int = 0):
    """An ``onnxruntime.InferenceSession`` for one graph.

    Parameters
    ----------
    path : path-like
        ONNX file.
    backend_name : str
        ``"cuda"`` runs on ``CUDAExecutionProvider`` (TF32 off, so results match float32 CPU math,
        heuristic cuDNN algorithm choice);
        anything else on ``CPUExecutionProvider``.
    device_id : int
        CUDA device ordinal.

    Returns
    -------
    onnxruntime.InferenceSession
    """
    check_onnxruntime_install()
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = available_cores()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if backend_name == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DetectorError(
                "device 'cuda' asked for, but onnxruntime has no CUDAExecutionProvider: install the GPU build "
                "(`pip uninstall -y onnxruntime && pip install onnxruntime-gpu`, i.e. gpuau[cuda12])"
            )
        # HEURISTIC: RNet/ONet batch sizes change every call, and an exhaustive cuDNN search per new
        # shape would cost more than the convolutions.
        cuda = {"device_id": device_id, "use_tf32": 0, "cudnn_conv_algo_search": "HEURISTIC"}
        providers = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    return ort.InferenceSession(str(Path(path)), sess_options=opts, providers=providers)
