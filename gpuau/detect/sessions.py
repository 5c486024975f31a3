"""onnxruntime sessions for the MTCNN graphs (onnxruntime is imported here, lazily)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def execution_providers(backend_name: str, device_id: int = 0) -> list:
    """onnxruntime providers for a gpuau backend.

    ``"cuda"`` asks for ``CUDAExecutionProvider`` (TF32 off, so results match float32 CPU math;
    heuristic cuDNN algorithm choice, because RNet/ONet batch sizes change every call and an
    exhaustive search per new shape would cost more than the convolutions) when the installed
    onnxruntime build has it; gpuau's default install has the CPU build only, and then, like every
    other backend, MTCNN runs on ``CPUExecutionProvider``.

    Raises
    ------
    gpuau._deps.DependencyError
        No onnxruntime, or several onnxruntime builds, are installed.
    """
    from gpuau._deps import check_onnxruntime

    check_onnxruntime()
    import onnxruntime as ort

    if backend_name == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            cuda = {"device_id": device_id, "use_tf32": 0, "cudnn_conv_algo_search": "HEURISTIC"}
            return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
        log.info("onnxruntime has no CUDAExecutionProvider (CPU build installed): MTCNN runs on the CPU")
    return ["CPUExecutionProvider"]


def make_session(path: "str | os.PathLike", backend_name: str, device_id: int = 0):
    """An ``onnxruntime.InferenceSession`` for one graph: all graph optimisations, one intra-op
    thread per available core.

    Parameters
    ----------
    path : path-like
        ONNX file.
    backend_name : str
        gpuau backend name (``"cpu"``, ``"cuda"``, ``"emulated"``), see :func:`execution_providers`.
    device_id : int
        CUDA device ordinal.

    Returns
    -------
    onnxruntime.InferenceSession
    """
    providers = execution_providers(backend_name, device_id)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = available_cores()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(Path(path)), sess_options=opts, providers=providers)
