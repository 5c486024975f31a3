"""gpuau: OpenFace 2.2 facial Action Units from video, on GPU (CuPy) or CPU (Numba).

Public API::

    import gpuau
    result = gpuau.analyze_video("clip.mp4", device="cpu")       # one call
    an = gpuau.Analyzer(device="cuda")                             # models load once, many videos
    an.analyze_video("a.mp4").to_csv("a.csv")

Importing :mod:`gpuau` loads no heavy library (numba, cupy, onnxruntime, OpenCV); they load on first use.
"""
__version__ = "0.1.0"

__all__ = ["Analyzer", "DeviceError", "InputError", "ModelStoreError", "Result", "analyze_video", "__version__"]

_LAZY = {"Analyzer": "gpuau.pipeline", "Result": "gpuau.pipeline", "analyze_video": "gpuau.pipeline",
         "DeviceError": "gpuau.device", "InputError": "gpuau.video", "ModelStoreError": "gpuau.models.store"}
# the modules a caller reaches as gpuau.NAME after a plain ``import gpuau`` (gpuau.video.serial_opencv(), ...): the
# pipeline's stages and runners; the kernels and their Numba twins (gpuau.kernels, gpuau.cpu) are reached through a
# device's backend, not by name
_SUBPACKAGES = ("au", "corpus", "detect", "device", "distributed", "engine", "features", "io", "landmarks", "models",
                "pipeline", "video")


def __getattr__(name):
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"gpuau.{name}")
    else:
        raise AttributeError(f"module 'gpuau' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + list(_SUBPACKAGES))
