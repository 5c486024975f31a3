"""Load a kernel source ``gpuau/kernels/<source>.cu`` for a backend, once per (device, source, defines).

``load_module(backend, "warp")`` returns a ``cupy.RawModule`` on ``cuda`` and the CPU emulator's
module (:class:`gpuau.kernels.emulator.EmulatedModule`) on ``emulated``; both launch kernels as
``module.get_function(name)(grid, block, args)``.  The ``defines`` become a ``#define NAME VALUE``
preamble in front of the source (cuCIM's ``_hessian_det_appx.py`` pattern).

Every kernel wrapper (``gpuau/kernels/<name>.py``) is decorated with :func:`on_device`, so its
allocations, module loads and launches run under ``cupy.cuda.Device(backend.device_id)``; the analyses make
their device current before each frame (:meth:`gpuau.device.Backend.use`) for the CuPy work between wrappers, so a
``cuda:1`` backend works from any thread of a process whose current device is another one.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Union

KERNEL_DIR = Path(__file__).resolve().parent

# NVRTC options of every build (the GPU's, and the compile check of gpuau.kernels.nvrtc, which is the same
# compile). --fmad=false: no silent a*b+c -> fma contraction, so the GPU rounds like the emulator and the
# Numba twins; write fmaf(...) where a fused multiply-add is meant. No -ftz=true: float32 subnormals are kept,
# as on the CPU (CuPy's own compile appends -ftz=true to every option list, which the last occurrence wins).
NVRTC_OPTIONS: tuple[str, ...] = ("-std=c++14", "--fmad=false")

log = logging.getLogger("gpuau")

Defines = Union[Mapping[str, object], Iterable[tuple[str, object]]]

_DEFINES_LINE = re.compile(r"^\s*//\s*defines:(.*)$")
_INCLUDE_LINE = re.compile(r'^\s*#\s*include\s+"([\w.]+\.cuh)"\s*$')
_SPILLS_LINE = re.compile(r"^\s*//\s*spills:\s*(\d+)\s+bytes\b")


def normalize_defines(defines: Defines = ()) -> tuple[tuple[str, str], ...]:
    """``{"N": 4}`` or ``(("N", 4),)`` -> ``(("N", "4"),)``, sorted by name (a hashable cache key).

    Booleans become ``1``/``0``; other values are written with ``str``.
    """
    items = defines.items() if isinstance(defines, Mapping) else defines
    out = {}
    for name, value in items:
        name = str(name)
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(f"invalid #define name {name!r}")
        out[name] = str(int(value)) if isinstance(value, bool) else str(value)
    return tuple(sorted(out.items()))


def kernel_path(source: str) -> Path:
    """Path of ``gpuau/kernels/<source>.cu``."""
    path = KERNEL_DIR / f"{source}.cu"
    if not path.is_file():
        raise FileNotFoundError(f"no kernel source {path}")
    return path


def kernel_source(source: str, defines: Defines = ()) -> str:
    """Text compiled for ``source``: the ``#define`` preamble, then ``gpuau/kernels/<source>.cu`` with its
    ``#include "<header>.cuh"`` lines replaced by those headers (from ``gpuau/kernels/``, each once).

    The headers are inlined here rather than found by the compiler, so NVRTC, the compile check and the
    emulator all build one self-contained text; ``#line`` directives keep the diagnostics' file and line.
    """
    preamble = "".join(f"#define {name} {value}\n" for name, value in normalize_defines(defines))
    return preamble + _with_headers(f"{source}.cu", kernel_path(source).read_text(), set())


def _with_headers(name: str, text: str, seen: set) -> str:
    out = [f'#line 1 "{name}"']
    for number, line in enumerate(text.splitlines(), 1):
        m = _INCLUDE_LINE.match(line)
        if m is None:
            out.append(line)
            continue
        header = m.group(1)
        if header not in seen:
            seen.add(header)
            path = KERNEL_DIR / header
            if not path.is_file():
                raise FileNotFoundError(f"{name}:{number}: no kernel header {path}")
            out.append(_with_headers(header, path.read_text(), seen))
        out.append(f'#line {number + 1} "{name}"')
    return "\n".join(out) + "\n"


def declared_defines(source: str) -> list[tuple[tuple[str, str], ...]]:
    """Define sets a ``.cu`` file declares for its compile check.

    Convention: each line ``// defines: NAME=VALUE NAME=VALUE`` among the file's leading comment
    lines is one variant to compile; a file without such a line is checked once with no defines.
    """
    variants = []
    for line in kernel_path(source).read_text().splitlines():
        if not line.strip().startswith("//"):
            break
        m = _DEFINES_LINE.match(line)
        if m:
            pairs = [tok.split("=", 1) for tok in m.group(1).split()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError(f"{source}.cu: malformed '// defines:' line {line!r} (want NAME=VALUE ...)")
            variants.append(normalize_defines(pairs))
    return variants or [()]


def declared_spills(source: str) -> int:
    """Register spill bytes (stores or loads, per kernel) a ``.cu`` file allows its compile check.

    Convention: a line ``// spills: N bytes (why)`` among the file's leading comment lines; 0
    without one.  For serial code whose calls into CUDA's math library (the slow argument
    reductions of ``sinf``/``cos``) make ptxas save a few registers around them.
    """
    for line in kernel_path(source).read_text().splitlines():
        if not line.strip().startswith("//"):
            break
        m = _SPILLS_LINE.match(line)
        if m:
            return int(m.group(1))
    return 0


def contiguous(xp, a, dtype=None, shape: "tuple | None" = None, what: str = "array"):
    """``a`` as a C-contiguous array of ``xp`` (NumPy, CuPy or :mod:`gpuau.kernels.emulated_arrays`) of ``dtype``
    (default: its own), checked to have ``shape`` when given (ValueError naming ``what``): the form of every array a
    kernel's wrapper passes to a launch, and that the Numba twins' shared argument checks return."""
    a = xp.ascontiguousarray(xp.asarray(a), dtype=dtype)
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"{what}: expected shape {tuple(shape)}, got {a.shape}")
    return a


def device_context(backend):
    """Context manager under which ``backend``'s arrays are allocated and its kernels launched.

    ``cupy.cuda.Device(backend.device_id)`` on ``cuda`` (CuPy allocates on, and launches a
    ``RawModule`` compiled for, the current device); a no-op on ``emulated`` and ``cpu``.
    """
    if backend.name == "cuda":
        import cupy

        return cupy.cuda.Device(backend.device_id)
    return contextlib.nullcontext()


def on_device(wrapper):
    """Decorate a kernel wrapper ``wrapper(backend, ...)`` to run under :func:`device_context`.

    The decorated function carries ``on_device = True`` (``tests/test_kernels_device.py`` checks
    that every wrapper in ``gpuau/kernels/`` has it).
    """

    @functools.wraps(wrapper)
    def run(backend, *args, **kwargs):
        with device_context(backend):
            return wrapper(backend, *args, **kwargs)

    run.on_device = True
    return run


def load_module(backend, source: str, defines: Defines = ()):
    """Compiled module of ``gpuau/kernels/<source>.cu`` for ``backend`` (memoised).

    Parameters
    ----------
    backend : gpuau.device.Backend
        ``cuda`` (a ``cupy.RawModule`` for ``backend.device_id``) or ``emulated``.
    source : str
        Kernel file name without ``.cu``.
    defines : mapping or sequence of (name, value)
        Prepended as ``#define NAME VALUE`` lines.

    Returns
    -------
    module
        ``module.get_function(name)`` returns a kernel called as ``kernel(grid, block, args)``.
    """
    if backend.name not in ("cuda", "emulated"):
        raise ValueError(f"backend {backend.name!r} runs no .cu kernels (the cpu backend uses gpuau.cpu)")
    return _load(backend.name, backend.device_id, source, normalize_defines(defines))


@lru_cache(maxsize=None)
def _load(kind: str, device_id: int, source: str, defines: tuple[tuple[str, str], ...]):
    code = kernel_source(source, defines)
    if kind == "emulated":
        from gpuau.kernels.emulator import compile_module

        return compile_module(code, name=source)
    import cupy

    with cupy.cuda.Device(device_id):  # compiled for, and loaded on, this device
        try:
            module = cupy.RawModule(path=str(_cubin(source, defines, cupy.cuda.Device(device_id).compute_capability)))
            module.compile()  # loads the CUBIN now, so that a failure falls back here
            return module
        except Exception as e:  # no [nvrtc] packages, or an NVRTC that does not know this GPU
            missing = isinstance(e.__cause__ or e, ImportError)
            hint = "; gpuau's [cuda12] / [cuda13] extra brings that NVRTC" if missing else ""
            log.warning("%s.cu: compiled by CuPy, which flushes float32 subnormals to zero where gpuau's NVRTC build "
                        "keeps them (%s: %s)%s", source, type(e).__name__, e, hint)
        module = cupy.RawModule(code=code, options=NVRTC_OPTIONS)
        module.compile()
    return module


def _cubin(source: str, defines: tuple[tuple[str, str], ...], compute_capability: str) -> Path:
    """The CUBIN of ``source`` for ``sm_<compute_capability>``, compiled by :func:`gpuau.kernels.nvrtc.compile_source`
    with exactly :data:`NVRTC_OPTIONS` (the compile CI checks), kept in the gpuau cache under a digest of the text, the
    options and the architecture."""
    from gpuau._atomic import atomic_write
    from gpuau.kernels.nvrtc import compile_source
    from gpuau.models.cache import cache_dir

    arch = f"sm_{compute_capability}"
    ident = "\0".join((kernel_source(source, defines), *NVRTC_OPTIONS, arch))
    path = cache_dir() / "cubin" / f"{source}-{hashlib.sha256(ident.encode()).hexdigest()[:24]}.cubin"
    if not path.is_file():
        cubin = compile_source(source, defines, arch=arch).cubin
        try:
            with atomic_write(path, "wb") as f:
                f.write(cubin)
        except OSError:  # an unwritable cache only costs the compile at the next start
            fd, name = tempfile.mkstemp(suffix=".cubin")
            with os.fdopen(fd, "wb") as f:
                f.write(cubin)
            return Path(name)
    return path
