"""Floating-point operations that Numba and NumPy do not spell: fused multiply-adds, and the C library's
``expf`` bit for bit.

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


def _fused(ty, llvm_ty):
    """An intrinsic ``(a, b, c) -> a * b + c`` with one rounding, in ``ty`` (LLVM's ``llvm.fma``)."""

    @intrinsic
    def fused(typingctx, a, b, c):
        def codegen(context, builder, signature, args):
            fn = builder.module.declare_intrinsic("llvm.fma", [llvm_ty], ir.FunctionType(llvm_ty, [llvm_ty] * 3))
            return builder.call(fn, args)

        return ty(ty, ty, ty), codegen

    return fused


fmaf = _fused(types.float32, ir.FloatType())
"""``fmaf(a, b, c)``: float32 fused multiply-add, one rounding."""
fma = _fused(types.float64, ir.DoubleType())
"""``fma(a, b, c)``: float64 fused multiply-add, one rounding."""


@intrinsic
def _bits(typingctx, x):
    """The IEEE bits of a float64, as uint64 (a bit cast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.uint64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, u):
    """The float64 of IEEE bits ``u`` (uint64; a bit cast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen


_EXP2_TABLE = np.array([
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540], np.uint64)
"""``bits(2^(i/32)) - (i << 47)``: with ``k << 47`` added back, the double ``2^(k/32)``."""
_EXP2_INV_LN2 = float.fromhex("0x1.71547652b82fep+0") * 32  # 32 / ln 2
_EXP2_SHIFT = float.fromhex("0x1.8p+52")  # adding it rounds a double to an integer (ties to even)
_EXP2_POLY = (float.fromhex("0x1.c6af84b912394p-5") / 32 ** 3, float.fromhex("0x1.ebfce50fac4f3p-3") / 32 ** 2,
              float.fromhex("0x1.62e42ff0c52d6p-1") / 32)
_EXPF_OVERFLOW = float.fromhex("0x1.62e42ep6")  # above: +inf
_EXPF_UNDERFLOW = -float.fromhex("0x1.9fe368p6")  # below: 0


@nb.njit(cache=True, nogil=True, inline="always")
def expf(x):
    """``expf(x)`` of float32 ``x`` exactly as glibc (2.28 and later) computes it on x86-64 with FMA: the
    ``exp2f_data`` algorithm (``2^(k/32)`` from a 32-entry table times a cubic in the remainder, in
    double) with GCC's contractions of that build (``r = fma(32/ln2, x, -k)`` and the polynomial's
    ``fma``).  Equal to the C library's ``expf`` on every float32 of [-103, 88] (measured exhaustively);
    OpenFace's sigmoid calls it."""
    if x > _EXPF_OVERFLOW:
        return np.float32(np.inf)
    if x < _EXPF_UNDERFLOW:
        return np.float32(0.0)
    xd = np.float64(x)
    kd = _EXP2_INV_LN2 * xd + _EXP2_SHIFT
    ki = _bits(kd)
    kd = kd - _EXP2_SHIFT
    r = fma(_EXP2_INV_LN2, xd, -kd)
    s = _from_bits(_EXP2_TABLE[ki % np.uint64(32)] + (ki << np.uint64(47)))
    c0, c1, c2 = _EXP2_POLY
    y = fma(fma(c0, r, c1), r * r, fma(c2, r, 1.0))
    return np.float32(y * s)


@nb.njit(cache=True, nogil=True)
def _fmaf_flat(a, b, c, out):
    for i in range(out.size):
        out[i] = fmaf(a[i], b[i], c[i])


def fmaf_arrays(a, b, c) -> np.ndarray:
    """Elementwise :func:`fmaf` of float32 arrays (broadcast together)."""
    shape = np.broadcast_shapes(np.shape(a), np.shape(b), np.shape(c))
    # flat writable copies (numpy 1.x warns when a broadcast_arrays view reaches Numba, which asks if it is writable)
    flat = [np.broadcast_to(np.asarray(x, np.float32), shape).flatten() for x in (a, b, c)]
    out = np.empty(shape, np.float32)
    _fmaf_flat(*flat, out.reshape(-1))
    return out
