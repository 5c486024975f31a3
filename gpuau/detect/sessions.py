"""onnxruntime sessions for the MTCNN graphs (onnxruntime is imported here, lazily)."""
from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path

from gpuau.cpu import threads

log = logging.getLogger(__name__)


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


def make_session(graph: "str | os.PathLike | bytes", backend_name: str, device_id: int = 0):
    """An ``onnxruntime.InferenceSession`` for one graph: all graph optimisations, one intra-op
    thread per core of the CPU kernels (:func:`gpuau.cpu.threads.cores`), and pool threads that
    sleep when idle instead of spinning (``session.intra_op.allow_spinning`` and
    ``session.inter_op.allow_spinning`` off; onnxruntime's default spins after each run, burning CPU
    that the pipeline's tracking, AU and decode threads need: docs/performance.md, Both cores).

    Parameters
    ----------
    graph : path-like or bytes
        ONNX file, or its bytes.
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

    cuda = providers[0] != "CPUExecutionProvider"
    if cuda:
        _preload_cuda_libraries()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads.cores()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(graph if isinstance(graph, bytes) else str(Path(graph)), sess_options=opts,
                                   providers=providers)
    if cuda and "CUDAExecutionProvider" not in session.get_providers():
        _warn_cuda_provider_failed(ort.__version__)
    return session


_preloading = threading.Lock()
_preloaded: list = []  # [True] once done


def _preload_cuda_libraries() -> None:
    """Once per process, onnxruntime-gpu's own load of the CUDA and cuDNN libraries of NVIDIA's pip wheels
    (``onnxruntime.preload_dlls``, 1.21 and newer; its CUDA provider does not look for them there by itself, which
    onnxruntime's documentation asks of a process without PyTorch); what it prints of a library it cannot load goes to
    the debug log (the CLI's stdout stays its own; :func:`_warn_cuda_provider_failed` says what it means)."""
    import contextlib
    import io

    import onnxruntime as ort

    with _preloading:  # threads opening their first CUDA sessions together (two devices): one preload
        if _preloaded or not hasattr(ort, "preload_dlls"):
            return
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                ort.preload_dlls()
        except Exception as e:  # a build that cannot preload: the provider loads what it finds, as before
            log.debug("onnxruntime.preload_dlls failed: %s: %s", type(e).__name__, e)
        _preloaded.append(True)
    if printed.getvalue().strip():
        log.debug("onnxruntime.preload_dlls: %s", printed.getvalue().strip())


@functools.lru_cache(maxsize=None)
def _warn_cuda_provider_failed(version: str) -> None:
    """Say once that onnxruntime's CUDA execution provider did not load, and why it usually does not: onnxruntime
    lists it for any GPU build, and falls back to the CPU when its CUDA or cuDNN libraries do not load."""
    log.warning("onnxruntime-gpu %s could not load its CUDA execution provider, so MTCNN runs on the CPU (the landmarks, "
                "features and AUs still run on the GPU). Its CUDA and cuDNN libraries are missing or of another CUDA "
                "major: onnxruntime-gpu 1.27 and newer are built for CUDA 13, 1.21-1.26 for CUDA 12. Fix: pip install "
                "'onnxruntime-gpu[cuda,cudnn]>=1.27' for a CUDA 13 driver, 'onnxruntime-gpu[cuda,cudnn]>=1.21,<1.27' "
                "for CUDA 12 (README, onnxruntime: one build only)", version)


ARENA_SHRINK_BYTES = 4 << 20
"""Inputs above this size (MTCNN's PNet pyramid of a 2560x1440 frame or larger: 4.5 MB; 1920x1080's is 2.6 MB)
hand the memory their run took back at its end: onnxruntime's CPU arena otherwise keeps the largest run's for the
session's life (detecting in a 3840x2160 frame left it 170-270 MB larger; with the shrinkage 100-110 MB, for ~30 ms
more per detection there)."""


def run_session(session, inputs: dict, backend) -> list:
    """Run ``session`` on inputs that may live on ``backend``'s device; outputs come back as NumPy arrays.

    On ``cuda`` with the CUDA execution provider, device arrays (CuPy) are bound where they are
    (onnxruntime IO binding: no copy through the host); otherwise they are copied to the host first.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
    inputs : dict of str -> array
        NumPy arrays, or arrays on ``backend``'s device.
    backend : gpuau.device.Backend

    Returns
    -------
    list of numpy.ndarray
        The session's outputs, in order.
    """
    if backend.is_gpu and "CUDAExecutionProvider" in session.get_providers():
        # onnxruntime reads the inputs on its own stream: let CuPy's work on them finish first
        backend.xp.cuda.get_current_stream().synchronize()
        return run_bound(session, inputs, "cuda", backend.device_id)
    feeds = {name: backend.asnumpy(value) for name, value in inputs.items()}
    options = None
    if sum(v.nbytes for v in feeds.values()) > ARENA_SHRINK_BYTES:
        import onnxruntime as ort

        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return session.run(None, feeds, options)


def run_bound(session, inputs: dict, device_type: str, device_id: int) -> list:
    """:func:`run_session` through IO binding: NumPy inputs bound as host memory, others (anything with
    ``__cuda_array_interface__``, C-contiguous) bound in place on ``device_type:device_id``."""
    import numpy as np

    binding = session.io_binding()
    for name, value in inputs.items():
        if isinstance(value, np.ndarray):
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
            continue
        interface = value.__cuda_array_interface__
        if interface.get("strides") is not None:
            raise ValueError(f"input {name!r}: a device array must be C-contiguous")
        dtype = np.dtype(interface["typestr"])
        binding.bind_input(name, device_type, device_id, dtype.type, list(interface["shape"]), interface["data"][0])
    for output in session.get_outputs():
        binding.bind_output(output.name, "cpu")
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()
