"""OpenFace's AU predictor files: the list file (``AU_all_best.txt``, ``AU_all_static.txt``) and the
binary linear SVR/SVM files it names, flattened into stacked weight matrices.

Port of FaceAnalyser::ReadAU / ReadRegressor (FaceAnalyser.cpp) and the ``Read`` methods of
SVR_static_lin_regressors, SVR_dynamic_lin_regressors, SVM_static_lin and SVM_dynamic_lin (matrices
read by :mod:`gpuau.models.opencv_matrix`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpuau.models.cache import load_cached
from gpuau.models.opencv_matrix import BinaryReader
from gpuau.models.store import AU_DIR, model_file

# FaceAnalyser::RegressorType values that FeatureExtraction's models use.
SVR_STATIC, SVR_DYNAMIC, SVM_STATIC, SVM_DYNAMIC = 0, 1, 4, 5

DYNAMIC_LIST = "AU_all_best.txt"
"""The list ``main_dynamic_svms.txt`` names: FeatureExtraction's (video) models."""
STATIC_LIST = "AU_all_static.txt"
"""The list ``main_static_svms.txt`` names: FaceLandmarkImg's (single image) models."""


def parse_au_regressor(path: "str | os.PathLike") -> dict:
    """Parse one binary linear SVR/SVM file.

    Returns
    -------
    dict
        ``kind`` () int32 (0 SVR static, 1 SVR dynamic, 4 SVM static, 5 SVM dynamic),
        ``means`` (D,) float64, ``weights`` (D, K) float64, ``bias`` () float64,
        ``cutoff`` () float64 (dynamic SVR only, else -1), ``pos`` / ``neg`` () float64 (SVM only,
        the values output for a positive / negative decision, else nan).
    """
    r = BinaryReader(Path(path).read_bytes(), path)
    kind = r.int32()
    cutoff = -1.0
    if kind == SVR_DYNAMIC:
        cutoff = r.float64()
    elif kind not in (SVR_STATIC, SVM_STATIC, SVM_DYNAMIC):
        raise ValueError(f"{path}: unsupported AU regressor type {kind}")
    means = r.matrix()
    weights = r.matrix()
    bias = r.float64()
    pos_cls = neg_cls = np.nan
    if kind in (SVM_STATIC, SVM_DYNAMIC):
        pos_cls, neg_cls = r.float64(), r.float64()
    r.expect_end("the regressor")
    return {
        "kind": np.int32(kind),
        "means": means.reshape(-1),
        "weights": weights,
        "bias": np.float64(bias),
        "cutoff": np.float64(cutoff),
        "pos": np.float64(pos_cls),
        "neg": np.float64(neg_cls),
    }


def parse_au_list(path: "str | os.PathLike") -> dict:
    """Parse an AU predictor list file and every regressor it names.

    Regressors are stacked in OpenFace's prediction order: static models first, then dynamic ones,
    each in file order (``GetAURegNames`` / ``GetAUClassNames``).  Intensity (SVR) and presence
    (SVM) models are kept apart under the prefixes ``reg_`` and ``cls_``.

    Returns
    -------
    dict
        For ``P`` in (``reg``, ``cls``) with ``K`` models of ``D`` features each:
        ``P_names`` (K,) str, ``P_weights`` (D, K) float64, ``P_means`` (K, D) float64,
        ``P_bias`` (K,) float64, ``P_dynamic`` (K,) bool; plus ``reg_cutoff`` (K,) float64 (-1 when
        a model has no cut-off) and ``cls_pos`` / ``cls_neg`` (K,) float64.
    """
    path = Path(path)
    entries: dict = {SVR_STATIC: [], SVR_DYNAMIC: [], SVM_STATIC: [], SVM_DYNAMIC: []}
    for line in path.read_text().splitlines():
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        names = [n.strip() for n in parts[1].split(",")] if len(parts) > 1 else [""]
        reg = parse_au_regressor(path.parent / parts[0])
        if reg["weights"].shape[1] != len(names):
            raise ValueError(f"{parts[0]}: {reg['weights'].shape[1]} models but names {names}")
        entries[int(reg["kind"])].append((names, reg))

    out = {}
    for prefix, kinds in (("reg", (SVR_STATIC, SVR_DYNAMIC)), ("cls", (SVM_STATIC, SVM_DYNAMIC))):
        items = [(n, r, k) for k in kinds for names, r in entries[k] for n in [names]]
        names, weights, means, bias, dynamic, cutoff, pos, neg = [], [], [], [], [], [], [], []
        for ns, r, k in items:
            for j, n in enumerate(ns):
                names.append(n)
                weights.append(r["weights"][:, j])
                means.append(r["means"])
                bias.append(r["bias"])
                dynamic.append(k in (SVR_DYNAMIC, SVM_DYNAMIC))
                cutoff.append(r["cutoff"])
                pos.append(r["pos"])
                neg.append(r["neg"])
        out[f"{prefix}_names"] = np.array(names, dtype=str)
        out[f"{prefix}_weights"] = np.stack(weights, axis=1)
        out[f"{prefix}_means"] = np.stack(means)
        out[f"{prefix}_bias"] = np.array(bias, dtype=np.float64)
        out[f"{prefix}_dynamic"] = np.array(dynamic, dtype=bool)
        if prefix == "reg":
            out["reg_cutoff"] = np.array(cutoff, dtype=np.float64)
        else:
            out["cls_pos"] = np.array(pos, dtype=np.float64)
            out["cls_neg"] = np.array(neg, dtype=np.float64)
    return out


@dataclass(frozen=True)
class AUModels:
    """Linear AU intensity (SVR) and presence (SVM) models, stacked for one matmul per frame.

    ``reg_*`` arrays have K_r entries, ``cls_*`` arrays K_c; weights are (D, K); ``D`` = 4464 FHOG
    values + 238 geometry values.  See :func:`parse_au_list` for the fields.
    """

    reg_names: np.ndarray
    reg_weights: np.ndarray
    reg_means: np.ndarray
    reg_bias: np.ndarray
    reg_dynamic: np.ndarray
    reg_cutoff: np.ndarray
    cls_names: np.ndarray
    cls_weights: np.ndarray
    cls_means: np.ndarray
    cls_bias: np.ndarray
    cls_dynamic: np.ndarray
    cls_pos: np.ndarray
    cls_neg: np.ndarray


def load_au_models(models: "str | os.PathLike | None" = None, *, dynamic: bool = True) -> AUModels:
    """FeatureExtraction's AU models (``AU_all_best.txt``, ``dynamic=True``) or FaceLandmarkImg's
    static ones (``AU_all_static.txt``), parsed once and cached."""
    path = model_file(f"{AU_DIR}/{DYNAMIC_LIST if dynamic else STATIC_LIST}", models)
    return AUModels(**load_cached(path, parse_au_list))
