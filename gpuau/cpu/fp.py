"""Floating-point operations that Numba does not spell: a float32 fused multiply-add.

The CUDA twins build with ``--fmad=false`` and write ``fmaf`` where OpenFace's or OpenCV's build
fuses a multiply-add; these are the same operations for the Numba code.
"""
from __future__ import annotations

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

