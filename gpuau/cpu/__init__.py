"""Numba (or NumPy) twins of the ``.cu`` kernels in :mod:`gpuau.kernels`, with the same signatures
minus the leading ``backend``; the ``cpu`` backend's ``backend.kernels.NAME`` is
``gpuau.cpu.NAME.NAME``.  Each module imports Numba on first use, not ``import gpuau``."""
