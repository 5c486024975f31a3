"""gpuau: OpenFace 2.2 facial Action Units from video, on GPU (CuPy) or CPU (Numba).

Importing :mod:`gpuau` loads no heavy library (numba, cupy, onnxruntime); they load on first use.
"""
__version__ = "0.1.0"

__all__ = ["__version__"]
