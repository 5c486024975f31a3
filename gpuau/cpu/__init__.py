"""Numba (or NumPy) twins of the ``.cu`` kernels in :mod:`gpuau.kernels`, with the same signatures
minus the leading ``backend``; the ``cpu`` backend's ``backend.kernels.NAME`` is
``gpuau.cpu.NAME.NAME``.  Each module imports Numba on first use, not ``import gpuau``.

Numba's parallel loops (``parallel=True``) run on its threading layer, OpenMP where ``libgomp`` is
found.  GNU OpenMP's idle threads spin after each parallel region by default; here they share the
cores with the pipeline's other threads (AU stage, decoding), which the spinning starves (a whole
video took 1.7x the wall time and 2.3x the CPU time on 2 cores).  So unless the user chose
otherwise, idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``, read when Numba starts its
threads, i.e. at the first parallel call).
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
