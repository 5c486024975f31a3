"""Checks of the installed third-party distributions, from their metadata only (nothing is imported).

onnxruntime ships as several distributions (``onnxruntime``, ``onnxruntime-gpu``, ...) that all install the
same ``onnxruntime`` import package into the same folder, and so does CuPy (``cupy-cuda12x``, ``cupy-cuda13x``...:
one ``cupy`` folder). With two of them installed, the files of one overwrite the other's and which build loads is
undefined (typically a CPU-only session on a GPU machine, or a crash on import). pip cannot prevent this, so gpuau
checks before it creates a session or a CUDA backend.
"""
from __future__ import annotations

from importlib import metadata

# Distributions that install the ``onnxruntime`` import package.
ONNXRUNTIME_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-qnn",
    "onnxruntime-silicon",
)
# The build gpuau depends on (pyproject's base dependencies).
ONNXRUNTIME_EXPECTED = "onnxruntime"
# Distributions that install the ``cupy`` import package (gpuau's extras: cuda12, cuda13).
CUPY_DISTRIBUTIONS = ("cupy", "cupy-cuda11x", "cupy-cuda12x", "cupy-cuda13x")


class DependencyError(RuntimeError):
    """Installed packages conflict or one is missing; the message gives the command that fixes it."""


def installed_version(distribution: str) -> "str | None":
    """Version of an installed distribution, or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def installed(distributions) -> dict:
    """The installed ones of ``distributions``, as ``{name: version}``."""
    found = {name: installed_version(name) for name in distributions}
    return {name: version for name, version in found.items() if version is not None}


def onnxruntime_distributions() -> dict:
    """Installed distributions that provide ``import onnxruntime``, as ``{name: version}``."""
    return installed(ONNXRUNTIME_DISTRIBUTIONS)


def several_cupy_builds() -> str:
    """Why the installed CuPy cannot be trusted, in words, where several builds share its folder; else ""."""
    found = installed(CUPY_DISTRIBUTIONS)
    if len(found) < 2:
        return ""
    listed = ", ".join(f"{n} {v}" for n, v in found.items())
    return (f"several CuPy builds are installed ({listed}), which overwrite each other's files in the same `cupy` "
            f"folder. Fix: pip uninstall -y {' '.join(found)}, then install gpuau's extra of your driver's CUDA "
            f"major (nvidia-smi's 'CUDA Version'): pip install -e '.[cuda12]' or '.[cuda13]' from gpuau's clone")


def check_onnxruntime() -> str:
    """Name of the one installed onnxruntime distribution.

    Raises
    ------
    DependencyError
        None is installed, or several are (they overwrite each other); the message names them and the
        commands that leave exactly one.
    """
    found = onnxruntime_distributions()
    if len(found) == 1:
        return next(iter(found))
    if not found:
        raise DependencyError(f"onnxruntime is not installed (MTCNN face detection needs it). "
                              f"Fix: pip install {ONNXRUNTIME_EXPECTED}")
    names = " ".join(found)
    listed = ", ".join(f"{n} {v}" for n, v in found.items())
    raise DependencyError(
        f"several onnxruntime builds are installed ({listed}); they overwrite each other's files in the same "
        f"`onnxruntime` folder. Fix: pip uninstall -y {names} && pip install {ONNXRUNTIME_EXPECTED} "
        f"(or, on a CUDA machine, install onnxruntime-gpu alone instead)")
