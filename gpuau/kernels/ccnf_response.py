"""GPU-path wrapper of the CCNF response kernel in ``ccnf_response.cu`` (CUDA or the CPU emulator).

Port of ``CCNF_patch_expert::ResponseOpenBlas`` and ``im2colContrastNormBias``,
CCNF_patch_expert.cpp; same arguments and output as :func:`gpuau.cpu.ccnf_response.ccnf_response`.
"""
from __future__ import annotations

import functools

import numpy as np

from gpuau.kernels.loader import contiguous, on_device


SIGMA_TILE = 32
"""ccnf_response.cu's SIGMA_TILE."""


def _threads(r: int) -> int:
    """ccnf_response.cu's THREADS for an r x r map: the next power of two >= its positions, at least one warp."""
    return max(32, 1 << (r * r - 1).bit_length())


@functools.lru_cache(maxsize=None)
def _shared_bytes(r: int, patch_h: int, patch_w: int, k: int) -> int:
    """Static shared memory of the kernel compiled for an r x r map, patches and ``k`` neurons: its ``__shared__``
    arrays (area, w, gain, resp, tile, lo in ccnf_response.cu)."""
    n_resp = r * r
    floats = (r + patch_h - 1) * (r + patch_w - 1) + k * (patch_h * patch_w + 1) + n_resp * (SIGMA_TILE + 2)
    return -(-4 * (floats + _threads(r)) // 8) * 8 + 8 * k  # the doubles aligned to 8 bytes, as ptxas lays them out


@on_device
def ccnf_response(backend, areas, weights, alphas, sigmas, patch_h: int = 11, patch_w: int = 11, experts=None):
    """Response maps of CCNF patch experts over areas of interest on ``backend`` (``cuda`` or ``emulated``).

    Port of ``CCNF_patch_expert::ResponseOpenBlas``, CCNF_patch_expert.cpp.

    Parameters
    ----------
    backend : gpuau.device.Backend
    areas : (N, A_h, A_w) float32
        Areas of interest, ``A = R + patch - 1``.
    weights : (E, K, 1 + patch_h*patch_w) float32
        Neuron rows ``[bias, norm_weight * filter (column-major)]`` of ``E`` experts.
    alphas : (E, K) float64
        Neuron alphas; neurons with ``alpha <= 1e-4`` (padding included) are skipped.
    sigmas : (E, R_h*R_w, R_h*R_w) float32
        CCNF covariance of each expert for this window size.
    patch_h, patch_w : int
    experts : (N,) int, optional
        Expert of each area, -1 for a map of zeros; default: area ``i`` is expert ``i % E`` (``N`` a
        multiple of ``E``).  Checked when on the host; on the device (not read back, so as not to wait
        for it) an index outside ``[0, E)`` gives a map of zeros as -1 does.

    Returns
    -------
    (N, R_h, R_w) float32 on the backend's device
        As :func:`gpuau.cpu.ccnf_response.ccnf_response`.
    """
    xp = backend.xp
    areas = contiguous(xp, areas, np.float32)
    if areas.ndim != 3:
        raise ValueError(f"ccnf_response: areas must be (N, A_h, A_w), got shape {areas.shape}")
    n, a_h, a_w = (int(v) for v in areas.shape)
    r_h, r_w = a_h - patch_h + 1, a_w - patch_w + 1
    if not 1 <= r_h == r_w <= 16:
        raise ValueError(
            f"ccnf_response: areas {a_h}x{a_w} give a {r_h}x{r_w} response map for {patch_h}x{patch_w} patches "
            "(square maps of 1 to 16 px supported; OpenFace's are 3 to 11)")
    weights = xp.asarray(weights)
    if weights.ndim != 3:
        raise ValueError(f"ccnf_response: weights must be (E, K, 1 + patch_h*patch_w), got shape {weights.shape}")
    n_experts, k = (int(v) for v in weights.shape[:2])
    shared = _shared_bytes(r_h, patch_h, patch_w, k)
    if shared > 48 * 1024:
        raise ValueError(f"ccnf_response: a {r_h}x{r_w} map of {patch_h}x{patch_w} patches with {k} neurons needs "
                         f"{shared} bytes of shared memory, over the 48 KiB a block has (OpenFace's: 3 to 11 px, "
                         "7 neurons)")
    # a host table is checked in int64 on the host, then uploaded; a device's int32 table is taken as it is
    host = experts is None or isinstance(experts, np.ndarray)
    table_xp, table_dtype = (np, np.int64) if host else (xp, np.int32)
    index = xp.asarray(expert_indices(n, n_experts, experts, table_xp, table_dtype), dtype=np.int32)
    expected = {"weights": (k, 1 + patch_h * patch_w), "alphas": (k,), "sigmas": (r_h * r_w, r_h * r_w)}
    arrays = {}
    for name, a, dtype in (("weights", weights, np.float32), ("alphas", alphas, np.float64),
                           ("sigmas", sigmas, np.float32)):
        a = xp.asarray(a)
        if a.shape != (n_experts, *expected[name]):
            raise ValueError(f"ccnf_response: {name} must have shape {(n_experts, *expected[name])}, got {a.shape}")
        arrays[name] = xp.ascontiguousarray(a, dtype=dtype)
    out = xp.empty((n, r_h, r_w), np.float32)
    if n == 0:
        return out
    defines = {"RESP_H": r_h, "RESP_W": r_w, "PATCH_H": patch_h, "PATCH_W": patch_w, "NEURONS": k}
    threads = _threads(r_h)
    i32 = np.int32
    backend.load_module("ccnf_response", defines).get_function("ccnf_response")(
        (n, 1, 1), (threads, 1, 1),
        (areas, arrays["weights"], arrays["alphas"], arrays["sigmas"], index, i32(n_experts), i32(n), out))
    return out


def expert_indices(n: int, n_experts: int, experts=None, xp=np, dtype=np.int64) -> "np.ndarray":
    """``(n,)`` ``dtype`` expert of each area (``xp``'s array; ``experts`` itself when it already is one):
    ``experts``, or ``i % n_experts``; each index checked to lie in ``[-1, n_experts)`` when ``xp`` is NumPy (a
    device's are not read back)."""
    if experts is None:
        if (n_experts == 0 and n) or (n_experts and n % n_experts):
            raise ValueError(f"ccnf_response: {n} areas do not cycle over {n_experts} experts "
                             f"(N must be a multiple of E)")
        return xp.arange(n, dtype=dtype) % max(n_experts, 1)
    experts = xp.asarray(experts).astype(dtype, copy=False).reshape(-1)
    if len(experts) != n:
        raise ValueError(f"ccnf_response: {len(experts)} expert indices for {n} areas")
    if xp is np and n and (int(experts.min()) < -1 or int(experts.max()) >= n_experts):
        raise ValueError(f"ccnf_response: expert indices must lie in [-1, {n_experts})")
    return xp.ascontiguousarray(experts)
