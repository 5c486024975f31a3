"""gpuau.cpu.fp: the C library's ``expf`` bit for bit (OpenFace's sigmoid calls it), and the fused
multiply-adds."""
import ctypes
import ctypes.util
import platform

import numba as nb
import numpy as np
import pytest

from gpuau.cpu.fp import expf, fma, fmaf

GLIBC_EXPF = [
    (0x4202422F, 0x56FC9F1C),  # 32.564632: the FMA build's rounding (the plain algorithm gives one ulp less)
    (0xC27C65D9, 0x11FA2993),  # -63.099461: likewise
    (0x00000000, 0x3F800000),  # 0
    (0x3F800000, 0x402DF854),  # 1
    (0xBF800000, 0x3EBC5AB2),  # -1
    (0x41A00000, 0x4DE75844),  # 20
    (0xC1200000, 0x383E6BCE),  # -10
    (0x42B17217, 0x7F7FFF84),  # the largest finite result
    (0x42B17218, 0x7F800000),  # overflow: inf
    (0xC2AEAC50, 0x007FFFE6),  # a subnormal result
    (0xC2CFF1B4, 0x00000001),  # the smallest result
    (0xC2CFF1B5, 0x00000000),  # underflow: 0
]
"""(float32 bits, glibc 2.36 ``expf`` bits on x86-64 with FMA: the build OpenFace's reference binary runs)."""


@nb.njit
def _expf_all(xs, out):
    for i in range(xs.size):
        out[i] = expf(xs[i])


def _expf(bits: np.ndarray) -> np.ndarray:
    xs = np.asarray(bits, np.uint32).view(np.float32)
    out = np.empty_like(xs)
    _expf_all(xs, out)
    return out.view(np.uint32)


def test_expf_equals_glibc_on_known_values():
    bits = np.array([b for b, _ in GLIBC_EXPF], np.uint32)
    assert _expf(bits).tolist() == [e for _, e in GLIBC_EXPF]
    assert np.isnan(_expf(np.array([0x7FC00000], np.uint32)).view(np.float32)[0])
    assert _expf(np.array([0x7F800000, 0xFF800000], np.uint32)).tolist() == [0x7F800000, 0]


@pytest.mark.skipif(platform.machine() != "x86_64" or platform.libc_ver()[0] != "glibc",
                    reason="the C library's expf is glibc's on x86-64 only here")
def test_expf_equals_this_c_library_on_a_sweep():
    """About 200 000 float32 spread evenly over [-104, 89]: gpuau's expf equals the C library's.  (Measured once
    exhaustively on this machine kind: all 2.2 billion float32 of [-103, 88].)"""
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.expf.restype, libm.expf.argtypes = ctypes.c_float, [ctypes.c_float]
    ranges = [(0, 0x42B20000), (0x80000000, 0xC2D00000)]
    bits = np.concatenate([np.arange(lo, hi, 4099, dtype=np.uint64) for lo, hi in ranges]).astype(np.uint32)
    sample = bits[:: max(1, len(bits) // 200_000)]
    expected = np.array([libm.expf(float(x)) for x in sample.view(np.float32)], np.float32).view(np.uint32)
    np.testing.assert_array_equal(_expf(sample), expected)


@nb.njit
def _fused(a, b, c, ad, bd, cd):
    return fmaf(a, b, c), fma(ad, bd, cd)


def test_fused_multiply_adds_round_once():
    # (1 + e)^2 - (1 + 2e) = e^2, which the product alone rounds away
    a, ad = np.float32(1 + 2.0 ** -12), 1 + 2.0 ** -27
    single, double = _fused(a, a, np.float32(-(1 + 2.0 ** -11)), ad, ad, -(1 + 2.0 ** -26))
    assert single == np.float32(2.0 ** -24) and double == 2.0 ** -54
