"""Parser of OpenFace's binary CCNF patch expert files (``ccnf_patches_*.txt``, despite the name).

Port of ``Patch_experts::Read_CCNF_patch_experts``, Patch_experts.cpp, ``CCNF_patch_expert::Read``
and ``CCNF_neuron::Read``, CCNF_patch_expert.cpp; matrices are read by :mod:`gpuau.models.opencv_matrix`.

The file holds, for one patch scale: the views (head-pose centres and per-landmark visibility),
the CCNF edge/similarity matrices ("sigma components") per response window size, then one patch
expert per view and landmark: a set of neurons (a normalised-correlation filter with bias, norm
weight and alpha each), the betas weighting the sigma components, and a patch confidence.

The parsed arrays are flattened so that all landmarks of a view can be processed as one batch:
neurons are padded to the largest count per view with ``alpha = 0`` (contributing nothing).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gpuau.models.opencv_matrix import BinaryReader


def parse_ccnf(path: "str | os.PathLike") -> "dict[str, np.ndarray]":
    """Parse a CCNF patch expert file.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    dict
        ``patch_scaling`` () float64; ``centers`` (V, 3) float64 (radians); ``visibility``
        (V, n) int32; ``window_sizes`` (W,) int32; ``sigma_components_{w}`` (B, w*w, w*w)
        float32 for each window size ``w``; per view ``v``:

        * ``view{v}/width``, ``view{v}/height`` (n,) int32 (0 for an empty expert);
        * ``view{v}/n_neurons`` (n,) int32;
        * ``view{v}/weights`` (n, K, 1 + h*w) float32: OpenFace's ``weight_matrix`` rows, i.e.
          the bias followed by the filter flattened column by column and multiplied by the
          neuron's norm weight;
        * ``view{v}/alphas`` (n, K) float64 (0 for padding);
        * ``view{v}/betas`` (n, B) float64;
        * ``view{v}/confidence`` (n,) float64.
    """
    r = BinaryReader(Path(path).read_bytes(), path)
    patch_scaling = r.float64()
    n_views = r.int32()
    centers = np.stack([r.matrix().reshape(3).astype(np.float64) * np.pi / 180.0 for _ in range(n_views)])
    visibility = np.stack([r.matrix().reshape(-1).astype(np.int32) for _ in range(n_views)])
    n_points = visibility.shape[1]
    n_windows = r.int32()
    out: dict = {"patch_scaling": np.float64(patch_scaling), "centers": centers, "visibility": visibility}
    windows = []
    n_betas = 0
    for _ in range(n_windows):
        w = r.int32()
        n_comp = r.int32()
        comps = [r.matrix().astype(np.float32) for _ in range(n_comp)]
        out[f"sigma_components_{w}"] = np.array(comps, np.float32).reshape(n_comp, w * w, w * w)
        if not windows:
            n_betas = n_comp  # betas per expert: as many as the first window's components
        windows.append(w)
    out["window_sizes"] = np.array(windows, np.int32)
    for v in range(n_views):
        experts = [_read_expert(r, n_betas) for _ in range(n_points)]
        k_max = max(len(e["alphas"]) for e in experts)
        size = max((e["weights"].shape[1] for e in experts if len(e["alphas"])), default=1)
        weights = np.zeros((n_points, k_max, size), np.float32)
        alphas = np.zeros((n_points, k_max), np.float64)
        for i, e in enumerate(experts):
            k = len(e["alphas"])
            if k:
                weights[i, :k] = e["weights"]
                alphas[i, :k] = e["alphas"]
        out[f"view{v}/width"] = np.array([e["width"] for e in experts], np.int32)
        out[f"view{v}/height"] = np.array([e["height"] for e in experts], np.int32)
        out[f"view{v}/n_neurons"] = np.array([len(e["alphas"]) for e in experts], np.int32)
        out[f"view{v}/weights"] = weights
        out[f"view{v}/alphas"] = alphas
        out[f"view{v}/betas"] = np.array([e["betas"] for e in experts], np.float64).reshape(n_points, n_betas)
        out[f"view{v}/confidence"] = np.array([e["confidence"] for e in experts], np.float64)
    r.expect_end("the patch experts")
    return out


def _read_expert(r: BinaryReader, n_betas: int) -> dict:
    read_type = r.int32()
    if read_type != 5:
        raise ValueError(f"CCNF patch expert: unexpected record type {read_type}")
    width, height, n_neurons = (r.int32() for _ in range(3))
    if n_neurons == 0:
        r.int32()  # the file repeats the (zero) count of an empty expert
        return {"width": 0, "height": 0, "weights": np.zeros((0, 1), np.float32), "alphas": [],
                "betas": np.zeros(n_betas), "confidence": 0.0}
    rows, alphas = [], []
    for _ in range(n_neurons):
        if r.int32() != 2:
            raise ValueError("CCNF neuron: unexpected record type")
        r.int32()  # neuron type (0: plain intensity; the only one these models use)
        norm_weights = r.scalars(np.float64)[0]
        bias = r.float64()
        alpha = r.float64()
        w = r.matrix().astype(np.float32)  # (h, w)
        # column by column; OpenCV's Mat * double scales in float32 (convertTo: the factor rounded to float)
        flat = w.T.reshape(-1) * np.float32(norm_weights)
        rows.append(np.concatenate([[np.float32(bias)], flat]).astype(np.float32))
        alphas.append(float(alpha))
    betas = r.scalars(np.float64, n_betas)
    confidence = r.float64()
    return {"width": width, "height": height, "weights": np.stack(rows), "alphas": alphas,
            "betas": betas, "confidence": confidence}
