"""Speed measurements of gpuau (``python -m benchmarks.run``, ``python -m benchmarks.profile``)."""
