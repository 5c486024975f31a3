"""Floating-point operations that Numba and NumPy do not spell: a float32 fused multiply-add.

The CUDA twins build with ``--fmad=false`` and write ``fmaf`` where OpenFace's or OpenCV's build
fuses a multiply-add; :func:`fmaf` is the same operation for the Numba code, :func:`fmaf_arrays`
for host-side NumPy code.
"""
from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def fmaf(typingctx, a, b, c):
    """``fmaf(a, b, c)``: float32 fused multiply-add, one rounding (LLVM's ``llvm.fma.f32``)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fn, args)

    return sig, codegen


@nb.njit(cache=True, nogil=True)
def _fmaf_flat(a, b, c, out):
    for i in range(out.size):
        out[i] = fmaf(a[i], b[i], c[i])


def fmaf_arrays(a, b, c) -> np.ndarray:
    """Elementwise :func:`fmaf` of float32 arrays (broadcast together)."""
    a, b, c = np.broadcast_arrays(*(np.asarray(x, np.float32) for x in (a, b, c)))
    out = np.empty(a.shape, np.float32)
    _fmaf_flat(np.ascontiguousarray(a).ravel(), np.ascontiguousarray(b).ravel(), np.ascontiguousarray(c).ravel(),
               out.reshape(-1))
    return out
