"""CLNF landmark model: PDM + CCNF patch experts per scale + fitting parameters, the main model
with its hierarchical part models, and the fitting itself (mean-shift + NU-RLMS).

Port of ``CLNF::Read``, ``CLNF::DetectLandmarks``, ``CLNF::Fit``, ``CLNF::NU_RLMS`` and
``CLNF::GetWeightMatrix`` (LandmarkDetectorModel.cpp) and of ``FaceModelParameters``
(LandmarkDetectorParameters.cpp) as FeatureExtraction sets it for ``-mloc model/main_clnf_general.txt``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

import numpy as np

from gpuau.cpu import pdm_fit
from gpuau.cpu.ccnf_response import ccnf_response
from gpuau.cpu.mean_shift import kde_table, landmark_likelihoods
from gpuau.landmarks.ccnf import CCNFScale, extract_areas, similarity_to_reference
from gpuau.landmarks.pdm import PDM, _vec
from gpuau.models.clnf_file import parse_clnf, parse_main_clnf
from gpuau.models.store import LANDMARK_DIR, model_file

_F = np.float32

MAIN_MODEL = LANDMARK_DIR + "/main_clnf_general.txt"


@dataclass(frozen=True)
class FitParameters:
    """Fitting parameters of one model (OpenFace's ``FaceModelParameters`` fields that CLNF uses).

    Defaults are ``FaceModelParameters::init`` for the main CLNF model.
    """

    window_sizes_init: tuple = (11, 9, 7, 5)
    window_sizes_small: tuple = (0, 9, 7, 0)
    reg_factor: float = 25.0
    sigma: float = 1.5
    weight_factor: float = 0.0
    num_iterations: int = 5
    refine_parameters: bool = True
    refine_hierarchical: bool = True
    validate_detections: bool = True
    validation_boundary: float = 0.725
    reinit_video_every: int = 2


# Per-part parameters set by CLNF::Read (refine_parameters / refine_hierarchical / validation off).
PART_PARAMETERS = {
    "left_eye_28": dict(window_sizes_init=(3, 5, 9), window_sizes_small=(3, 5, 9), reg_factor=0.5, sigma=1.0),
    "right_eye_28": dict(window_sizes_init=(3, 5, 9), window_sizes_small=(3, 5, 9), reg_factor=0.5, sigma=1.0),
    "inner": dict(window_sizes_init=(9,), window_sizes_small=(9,), reg_factor=2.5, sigma=1.75, weight_factor=2.5),
}


@dataclass(eq=False)
class CLNFModel:
    """One CLNF model: a PDM and CCNF patch experts at several scales.

    Attributes
    ----------
    pdm : PDM
    scales : list of CCNFScale
        In file order (increasing patch scaling).
    """

    pdm: PDM
    scales: list

    @classmethod
    def from_file(cls, path: "str | os.PathLike") -> "CLNFModel":
        d = parse_clnf(path)
        return cls(PDM.from_file(d["pdm"]), [CCNFScale.from_file(p) for p in d["ccnf"]])


@dataclass(eq=False)
class Part:
    """A hierarchical part model and how its points map into the main model's."""

    name: str
    model: CLNFModel
    parameters: FitParameters
    main_idx: np.ndarray  # (k,) int
    part_idx: np.ndarray  # (k,) int


@dataclass(eq=False)
class CLNF:
    """The main CLNF model with its hierarchical parts (inner face, eyes).

    Attributes
    ----------
    model : CLNFModel
    parameters : FitParameters
    parts : list of Part
    """

    model: CLNFModel
    parameters: FitParameters
    parts: list = field(default_factory=list)

    @classmethod
    def load(cls, models: "str | os.PathLike | None" = None, parameters: "FitParameters | None" = None) -> "CLNF":
        """Load ``main_clnf_general.txt`` and the models it names."""
        d = parse_main_clnf(model_file(MAIN_MODEL, models))
        parts = []
        for name, path, mapping in d["parts"]:
            part_main = parse_main_clnf(path)
            m = np.array(mapping, dtype=np.int64).reshape(-1, 2)
            p = FitParameters(refine_parameters=False, refine_hierarchical=False, validate_detections=False,
                              **PART_PARAMETERS.get(name, {}))
            parts.append(Part(name, CLNFModel.from_file(part_main["clnf"]), p, m[:, 0], m[:, 1]))
        return cls(CLNFModel.from_file(d["clnf"]), parameters or FitParameters(), parts)


@dataclass
class FitResult:
    """Outcome of fitting one model to one frame.

    Attributes
    ----------
    params_global : ndarray (6,) float32
    params_local : ndarray (m,) float32
    landmarks : ndarray (n, 2) float32
    success : bool
        False when the scale collapsed below 0.25 (OpenFace's ``Fit`` failure).
    likelihood : float or None
        Model log-likelihood of the last NU-RLMS pass that computed it (None when the fit
        stopped before computing one; OpenFace then keeps the model's previous value).
    landmark_likelihoods : ndarray (n,) float32
    view : int
        View of the patch experts used last.
    """

    params_global: np.ndarray
    params_local: np.ndarray
    landmarks: np.ndarray
    success: bool
    likelihood: "float | None" = None
    landmark_likelihoods: "np.ndarray | None" = None
    view: int = 0
    part_landmarks: dict = field(default_factory=dict)


def _weights(model: CLNFModel, scale: int, view: int, weight_factor: float) -> "np.ndarray | None":
    """Diagonal of NU-RLMS's weight matrix (port of ``CLNF::GetWeightMatrix``); None = identity."""
    if weight_factor <= 0:
        return None
    conf = model.scales[scale].confidence(view).astype(_F)
    return _F(weight_factor) * np.concatenate([conf, conf])


def nu_rlms(model: CLNFModel, responses: np.ndarray, params_global, params_local, base_shape: np.ndarray,
            sim_img_to_ref: np.ndarray, sim_ref_to_img: np.ndarray, resp_size: int, view: int, rigid: bool,
            scale: int, parameters: FitParameters, compute_likelihood: bool):
    """Regularised landmark mean-shift: alternate mean-shifts on the response maps with
    Gauss-Newton updates of the PDM params (rigid: global params only).

    Port of ``CLNF::NU_RLMS``, LandmarkDetectorModel.cpp.

    Parameters
    ----------
    responses : ndarray (n, R, R) float32
    params_global : ndarray (6,) ; params_local : ndarray (m,)
    base_shape : ndarray (n, 2) float32
        Shape at which the response maps were centred.
    sim_img_to_ref, sim_ref_to_img : ndarray (2, 2) float32

    Returns
    -------
    params_global : ndarray (6,) float32
    params_local : ndarray (m,) float32
    likelihood : float
    landmark_likelihoods : ndarray (n,) float32 or None
    """
    pdm = model.pdm
    n = pdm.n_points
    visible = model.scales[scale].visibility[view]
    w = _weights(model, scale, view, parameters.weight_factor)
    if w is None:
        w = np.ones(2 * n, _F)
    a = _F(-0.5 / float(_F(parameters.sigma) * _F(parameters.sigma)))
    g, loc, dxs, dys = pdm_fit.nu_rlms(
        pdm.mean_shape, pdm.princ_comp, pdm.eigen_values, responses, _vec(params_global), _vec(params_local),
        np.ascontiguousarray(base_shape, _F), np.ascontiguousarray(sim_img_to_ref, _F),
        np.ascontiguousarray(sim_ref_to_img, _F), visible, w, _F(parameters.reg_factor),
        parameters.num_iterations, rigid, kde_table(resp_size, float(a)), _F((resp_size - 1) // 2))
    likelihood = 0.0
    lhoods = None
    if compute_likelihood:
        lhoods = landmark_likelihoods(responses, dxs, dys, visible, float(parameters.sigma))
        ll = _F(0)
        for i in np.flatnonzero(visible):
            ll = _F(float(ll) + math.log(float(lhoods[i]) + 1e-8))
        likelihood = float(ll / _F(visible.sum()))
    return g, loc, likelihood, lhoods


def patch_responses(model: CLNFModel, gray: np.ndarray, params_global, params_local, window_size: int, scale: int):
    """Response maps of all landmarks' patch experts around the current shape.

    Port of ``Patch_experts::Response`` (CCNF branch), Patch_experts.cpp.

    Parameters
    ----------
    gray : ndarray (H, W) float32

    Returns
    -------
    responses : ndarray (n, R, R) float32
        Zero maps for invisible landmarks.
    sim_img_to_ref, sim_ref_to_img : ndarray (2, 2) float32
    view : int
    """
    ccnf = model.scales[scale]
    pdm = model.pdm
    view = ccnf.view_index(params_global)
    shape = pdm.calc_shape_2d(params_global, params_local)
    ref = pdm.calc_shape_2d(np.array([ccnf.patch_scaling, 0, 0, 0, 0, 0], _F), params_local)
    img_to_ref, ref_to_img = similarity_to_reference(shape, ref)
    ph, pw = ccnf.patch_size
    sig = ccnf.sigmas(view, window_size)
    visible = ccnf.visibility[view]
    if visible.all():
        areas = extract_areas(gray, shape, ref_to_img, window_size + pw - 1)
        out = ccnf_response(areas, ccnf.weights(view), ccnf.alphas(view), sig, ph, pw)
        return out, img_to_ref, ref_to_img, view
    vis = np.flatnonzero(visible)
    areas = extract_areas(gray, shape[vis], ref_to_img, window_size + pw - 1)
    out = np.zeros((pdm.n_points, window_size, window_size), _F)
    out[vis] = ccnf_response(areas, ccnf.weights(view)[vis], ccnf.alphas(view)[vis], sig[vis], ph, pw)
    return out, img_to_ref, ref_to_img, view


def fit(model: CLNFModel, gray: np.ndarray, params_global, params_local, window_sizes, parameters: FitParameters) -> FitResult:
    """Fit one CLNF model to a frame, coarse to fine over the patch scales.

    Port of ``CLNF::Fit``, LandmarkDetectorModel.cpp.

    Parameters
    ----------
    gray : ndarray (H, W) float32
    params_global : array_like (6,) ; params_local : array_like (m,)
        Initial parameters.
    window_sizes : sequence of int
        Response window size per scale (0 skips the scale).

    Returns
    -------
    FitResult
    """
    g = np.asarray(params_global, _F).copy()
    loc = np.asarray(params_local, _F).copy()
    n_scales = len(model.scales)
    result = FitResult(g, loc, None, True)
    for scale in range(n_scales):
        ws = int(window_sizes[scale])
        if ws == 0:
            continue
        responses, img_to_ref, ref_to_img, view = patch_responses(model, gray, g, loc, ws, scale)
        p = parameters
        if parameters.refine_parameters:
            smax = min(scale, 2)
            lg = math.log(model.scales[smax].patch_scaling / 0.25) / math.log(2)
            reg = float(_F(parameters.reg_factor - 15 * lg))
            if reg <= 0:
                reg = 0.001
            p = replace(parameters, reg_factor=reg, sigma=float(_F(parameters.sigma + 0.25 * lg)),
                        weight_factor=float(_F(parameters.weight_factor + 2 * parameters.weight_factor * lg)))
        base = model.pdm.calc_shape_2d(g, loc)
        g, loc, _, _ = nu_rlms(model, responses, g, loc, base, img_to_ref, ref_to_img, ws, view, True, scale, p, False)
        last = scale == n_scales - 1 or window_sizes[scale + 1] == 0 or g[0] < 0.30
        g, loc, ll, lh = nu_rlms(model, responses, g, loc, base, img_to_ref, ref_to_img, ws, view, False, scale, p, last)
        result.view = view
        if last:
            result.likelihood, result.landmark_likelihoods = ll, lh
        if g[0] < 0.25:
            result.success = False
            break
    result.params_global, result.params_local = g, loc
    result.landmarks = model.pdm.calc_shape_2d(g, loc)
    return result


def detect_landmarks(clnf: CLNF, gray8: np.ndarray, params_global, params_local, window_sizes=None) -> FitResult:
    """Fit the main model, then the hierarchical parts, and refit the main params to the merged
    landmarks (without validation; see :class:`gpuau.landmarks.tracker.FaceTracker`).

    Port of ``CLNF::DetectLandmarks`` (up to the validator), LandmarkDetectorModel.cpp.

    Parameters
    ----------
    gray8 : ndarray (H, W) uint8
    window_sizes : sequence of int, optional
        Defaults to the main parameters' initialisation windows.

    Returns
    -------
    FitResult
        ``success`` is ``Fit``'s; ``part_landmarks`` maps each part's name to its landmarks
        ``(k, 2)`` (fitted, or placed by the PDM when the face is too small for the part).
    """
    gray = gray8.astype(_F)
    params = clnf.parameters
    ws = params.window_sizes_init if window_sizes is None else window_sizes
    res = fit(clnf.model, gray, params_global, params_local, ws, params)
    if params.refine_hierarchical and clnf.parts:
        landmarks = res.landmarks.copy()
        used = False
        part_landmarks = []
        for part in clnf.parts:
            ppdm = part.model.pdm
            locs = np.zeros((ppdm.n_points, 2), _F)
            locs[part.part_idx] = landmarks[part.main_idx]
            pg, pl = ppdm.calc_params(locs)
            if res.params_global[0] > 0.9 * part.model.scales[0].patch_scaling:
                used = True
                pres = fit(part.model, gray, pg, pl, part.parameters.window_sizes_init, part.parameters)
                part_landmarks.append(pres.landmarks)
            else:
                part_landmarks.append(ppdm.calc_shape_2d(pg, pl))
        res.part_landmarks = {part.name: plm for part, plm in zip(clnf.parts, part_landmarks)}
        if used:
            for part, plm in zip(clnf.parts, part_landmarks):
                landmarks[part.main_idx] = plm[part.part_idx]
            g, loc = clnf.model.pdm.calc_params(landmarks)
            res.params_global, res.params_local = g, loc
            res.landmarks = clnf.model.pdm.calc_shape_2d(g, loc)
    return res
