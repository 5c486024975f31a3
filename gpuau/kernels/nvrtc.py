"""Compile-check a kernel source with NVRTC, without a GPU: PTX and CUBIN for one architecture, and
ptxas' resource report (registers, spills, shared memory) per kernel.

Uses ``cuda.bindings.nvrtc`` with the NVRTC library of the ``nvidia-cuda-nvrtc-cu12`` (or CUDA 13's
``nvidia-cuda-nvrtc``) wheel (gpuau's ``[nvrtc]``, ``[cuda12]`` or ``[cuda13]`` extra); ``cupy.RawModule.compile()`` cannot do this on a machine without a
device.  The same compile (:func:`compile_source`, :data:`gpuau.kernels.loader.NVRTC_OPTIONS`) makes the CUBIN the
GPU loads, so the check compiles exactly what runs there.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from gpuau.kernels.loader import NVRTC_OPTIONS, Defines, declared_spills, kernel_source, normalize_defines

ARCHS: tuple[str, ...] = ("sm_80", "sm_90")
MAX_STATIC_SHARED = 48 * 1024  # bytes of static __shared__ per block

_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USAGE = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


class KernelCompileError(RuntimeError):
    """A kernel source failed NVRTC, spills registers, or uses too much shared memory."""


@dataclass(frozen=True)
class KernelResources:
    """ptxas' report for one kernel (``__global__`` function)."""

    name: str
    registers: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int
    shared_bytes: int


@dataclass(frozen=True)
class CompileResult:
    """Outcome of :func:`compile_source` for one source, define set and architecture."""

    source: str
    arch: str
    defines: tuple[tuple[str, str], ...]
    ptx: bytes
    cubin: bytes
    kernels: dict[str, KernelResources]
    log: str


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise KernelCompileError(
            "NVRTC is not installed: gpuau's [nvrtc], [cuda12] or [cuda13] extra (`pip install -e '.[nvrtc]'` from "
            "gpuau's clone: cuda-bindings and NVRTC's wheel)"
        ) from exc
    return nvrtc


def _check(nvrtc, result, what: str, prog=None) -> None:
    err = result[0] if isinstance(result, tuple) else result
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        log = _log(nvrtc, prog) if prog is not None else ""
        raise KernelCompileError(f"{what}: {nvrtc.nvrtcGetErrorString(err)[1].decode()}\n{log}")


def _log(nvrtc, prog) -> str:
    log = _output(prog, nvrtc.nvrtcGetProgramLogSize, nvrtc.nvrtcGetProgramLog)
    return log.replace(b"\x00", b"").rstrip().decode(errors="replace")


def _output(prog, size_fn, get_fn) -> bytes:
    """One of NVRTC's outputs of ``prog`` (log, PTX, CUBIN): its size, then its bytes into a buffer of that size."""
    _, size = size_fn(prog)
    buf = b" " * size
    get_fn(prog, buf)
    return buf


def parse_ptxas_log(log: str) -> dict[str, KernelResources]:
    """Per-kernel registers, stack, spills and static shared memory from ``ptxas -v`` output."""
    kernels: dict[str, KernelResources] = {}
    name, fields = None, {}
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            name, fields = m.group(1), {}
            continue
        if name is None:
            continue
        m = _SPILLS.search(line)
        if m:
            fields.update(stack_bytes=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = _USAGE.search(line)
        if m:
            smem = _SMEM.search(line)
            kernels[name] = KernelResources(
                name=name,
                registers=int(m.group(1)),
                stack_bytes=fields.get("stack_bytes", 0),
                spill_stores=fields.get("spill_stores", 0),
                spill_loads=fields.get("spill_loads", 0),
                shared_bytes=int(smem.group(1)) if smem else 0,
            )
            name = None
    return kernels


def compile_source(source: str, defines: Defines = (), arch: str = "sm_90") -> CompileResult:
    """Compile ``gpuau/kernels/<source>.cu`` with ``defines`` for ``arch`` (the build the GPU loads:
    :func:`gpuau.kernels.loader.load_module`).

    Parameters
    ----------
    source : str
        Kernel file name without ``.cu``.
    defines : mapping or sequence of (name, value)
        The ``#define`` preamble, as given to :func:`gpuau.kernels.loader.load_module`.
    arch : str
        ``"sm_80"``, ``"sm_90"``, ...

    Returns
    -------
    CompileResult
        PTX, CUBIN and the per-kernel :class:`KernelResources`.

    Raises
    ------
    KernelCompileError
        NVRTC is missing or reports an error.
    """
    nvrtc = _nvrtc()
    defines = normalize_defines(defines)
    code = kernel_source(source, defines).encode()
    err, prog = nvrtc.nvrtcCreateProgram(code, f"{source}.cu".encode(), 0, [], [])
    _check(nvrtc, err, f"{source}.cu: nvrtcCreateProgram")
    try:
        opts = [o.encode() for o in (*NVRTC_OPTIONS, f"-arch={arch}", "--ptxas-options=-v")]
        _check(nvrtc, nvrtc.nvrtcCompileProgram(prog, len(opts), opts), f"{source}.cu ({arch}, {defines})", prog)
        log = _log(nvrtc, prog)
        ptx = _output(prog, nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX)
        cubin = _output(prog, nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN)
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    return CompileResult(source, arch, defines, ptx, cubin, parse_ptxas_log(log), log)


def compile_check(source: str, defines: Defines = (), arch: str = "sm_90") -> CompileResult:
    """:func:`compile_source`, and a check of the kernels' resources (what CI asserts of every source).

    Raises
    ------
    KernelCompileError
        NVRTC reports an error, a kernel spills more register bytes than the source's ``// spills:``
        line allows (:func:`gpuau.kernels.loader.declared_spills`; none by default), or uses more
        than 48 KB of static shared memory.
    """
    result = compile_source(source, defines, arch)
    allowed = declared_spills(source)
    problems = [
        f"{k.name}: {k.spill_stores} bytes spill stores, {k.spill_loads} bytes spill loads"
        + (f" (the source allows {allowed})" if allowed else "")
        for k in result.kernels.values()
        if max(k.spill_stores, k.spill_loads) > allowed
    ] + [
        f"{k.name}: {k.shared_bytes} bytes static shared memory > {MAX_STATIC_SHARED}"
        for k in result.kernels.values()
        if k.shared_bytes > MAX_STATIC_SHARED
    ]
    if problems:
        raise KernelCompileError(f"{source}.cu ({arch}, {result.defines}):\n  " + "\n  ".join(problems)
                                 + f"\n{result.log}")
    return result
