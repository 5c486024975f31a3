"""Synthetic CCNF patch experts (no model data): the inputs of ``tests/data/ccnf_openblas.npz``."""
import numpy as np

NEURONS = 7
PATCH = 11
CASES = [(w, seed) for w in (3, 5, 7, 9, 11, 15) for seed in (1, 2)]
"""(response window, seed): every map size OpenFace's models use, so every path of OpenBLAS's kernel."""


def expert_case(window: int, seed: int):
    """``(area (A, A), weights (NEURONS, 1 + PATCH^2), alphas (NEURONS,), sigma (P, P))`` float32 but the
    float64 alphas: grey levels, neuron rows [bias, filter], one neuron skipped (alpha <= 1e-4), and a
    covariance-like Sigma (a dominant diagonal)."""
    rng = np.random.default_rng(seed * 100 + window)
    a = window + PATCH - 1
    area = rng.integers(0, 256, (a, a)).astype(np.float32)
    area[: a // 3, : a // 3] = 17.0  # a flat corner: windows of zero norm where the map is large enough
    weights = (rng.random((NEURONS, 1 + PATCH * PATCH)) - 0.5).astype(np.float32)
    weights[:, 0] *= np.float32(20.0)
    alphas = rng.random(NEURONS) * 3.0 + 0.01
    alphas[NEURONS // 2] = 5e-5
    p = window * window
    sigma = ((rng.random((p, p)) - 0.5) * 0.02).astype(np.float32)
    sigma[np.arange(p), np.arange(p)] += np.float32(1.0)
    return area, weights, alphas, sigma
