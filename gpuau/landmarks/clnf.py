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
from functools import lru_cache

import numpy as np

from gpuau._kept import kept_with
from gpuau.cpu import threads
from gpuau.cpu.mean_shift import kde_table
from gpuau.device import Backend, resolve_device
from gpuau.landmarks.ccnf import CCNFScale
from gpuau.landmarks.pdm import PDM
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
    part_landmarks : dict
        Hierarchical part name -> its landmarks ``(k, 2)`` float32 (fitted, or placed by the part's PDM).
    part_params : dict
        Hierarchical part name -> its ``(params_global (6,), params_local (m,))``, float32 (the part model's
        state, which ``CLNF::GetShape`` of the part, and so the eyes' 3D landmarks and the gaze, read).
    """

    params_global: np.ndarray
    params_local: np.ndarray
    landmarks: np.ndarray
    success: bool
    likelihood: "float | None" = None
    landmark_likelihoods: "np.ndarray | None" = None
    view: int = 0
    part_landmarks: dict = field(default_factory=dict)
    part_params: dict = field(default_factory=dict)


def _view_weights(model: CLNFModel, scale: int, weight_factor: float, backend: Backend):
    """Diagonals of NU-RLMS's weight matrices of every view of a scale, ``(V, 2n)`` float32 on the backend's
    device (made once per model): ``weight_factor`` times the patch confidences (x, then y), or ones when
    ``weight_factor <= 0`` (OpenFace's identity).  Port of ``CLNF::GetWeightMatrix``; a face's row is its view's."""
    def make():
        n, views = model.pdm.n_points, len(model.scales[scale].visibility)
        if weight_factor <= 0:
            return backend.asarray(np.ones((views, 2 * n), _F))
        conf = np.stack([model.scales[scale].confidence(v).astype(_F) for v in range(views)])
        return backend.asarray(_F(weight_factor) * np.concatenate([conf, conf], axis=1))

    return kept_with(model, (_view_weights, scale, weight_factor, backend), make)


@lru_cache(maxsize=None)
def _kde(backend: Backend, resp_size: int, a: float):
    """:func:`kde_table` on the backend's device."""
    return backend.asarray(kde_table(resp_size, a))


@dataclass
class Responses:
    """Response maps of a batch of faces at one patch scale, and where they were computed; every array
    on the backend's device.

    Attributes
    ----------
    maps : (F, n, R, R) float32
        Zero maps for invisible landmarks.
    visible : (F, n) int32
    base : (F, n, 2) float32
        Shapes the maps are centred on.
    img_to_ref, ref_to_img : (F, 2, 2) float32
    views : (F,) int32
    """

    maps: object
    visible: object
    base: object
    img_to_ref: object
    ref_to_img: object
    views: object


def patch_responses(model: CLNFModel, images, image_index, params_global, params_local, window_size: int,
                    scale: int, backend: Backend) -> Responses:
    """Response maps of all landmarks' patch experts around the current shapes of a batch of faces, from
    parameters on the device, with no wait for the device: one ``response_areas`` launch (views, shapes,
    similarities, area matrices), one area warp and one ``ccnf_response`` call for every landmark of every
    face, whatever their views (an invisible landmark's map is zeros).

    Port of ``Patch_experts::Response`` (CCNF branch), Patch_experts.cpp.

    Parameters
    ----------
    images : (B, H, W) float32, on the backend's device
    image_index : (F,) int, on the backend's device
        Image of each face.
    params_global : (F, 6) float32 ; params_local : (F, m) float32, on the backend's device
    window_size, scale : int
    backend : Backend

    Returns
    -------
    Responses
    """
    xp = backend.xp
    ccnf = model.scales[scale]
    n = model.pdm.n_points
    ph, pw = ccnf.patch_size
    size = window_size + pw - 1
    mean, pc, _ = model.pdm.arrays(backend)
    centers, visibility = ccnf.view_arrays(backend)
    views, base, sims, matrices = backend.kernels.response_areas(mean, pc, centers, params_global, params_local,
                                                                 ccnf.patch_scaling, size)
    visible = visibility[views]
    experts = xp.where(visible != 0, views[:, None] * np.int32(n) + xp.arange(n, dtype=np.int32), np.int32(-1))
    areas = backend.kernels.warp_affine(images, xp.repeat(image_index, n), matrices.reshape(-1, 2, 3), size, size)
    maps = backend.kernels.ccnf_response(areas, *ccnf.expert_table(window_size, backend), ph, pw,
                                         experts=experts.reshape(-1))
    # contiguous for any number of faces: NU-RLMS then has one compiled signature, loaded once per process
    img_to_ref, ref_to_img = xp.ascontiguousarray(sims[:, 0]), xp.ascontiguousarray(sims[:, 1])
    return Responses(maps.reshape(len(views), n, window_size, window_size), visible, base, img_to_ref, ref_to_img,
                     views)


def _refined(parameters: FitParameters, model: CLNFModel, scale: int) -> FitParameters:
    """Per-scale regularisation, sigma and weight factor (``refine_parameters``, ``CLNF::Fit``)."""
    return _refined_for(parameters, model.scales[min(scale, 2)].patch_scaling)


@lru_cache(maxsize=None)
def _refined_for(parameters: FitParameters, patch_scaling: float) -> FitParameters:
    if not parameters.refine_parameters:
        return parameters
    lg = math.log(patch_scaling / 0.25) / math.log(2)
    reg = float(_F(parameters.reg_factor - 15 * lg))
    if reg <= 0:
        reg = 0.001
    return replace(parameters, reg_factor=reg, sigma=float(_F(parameters.sigma + 0.25 * lg)),
                   weight_factor=float(_F(parameters.weight_factor + 2 * parameters.weight_factor * lg)))


def _fit_scale(model: CLNFModel, r: Responses, params_global, params_local, scale: int, parameters: FitParameters,
               last, backend: Backend):
    """NU-RLMS of a batch of faces at one patch scale: a rigid then a non-rigid pass of mean-shifts on
    the response maps alternating with regularised Gauss-Newton updates of the PDM params, and the
    likelihoods of the faces whose fit ends at this scale (``last``, or a scale below 0.30 after the
    rigid pass), in one ``backend.kernels.nu_rlms`` call (Numba on the CPU; on the GPU one block per
    face).  Arrays in and out on the backend's device.

    Port of ``CLNF::NU_RLMS`` as ``CLNF::Fit`` runs it, LandmarkDetectorModel.cpp.

    Returns
    -------
    params_global : (F, 6) float32 ; params_local : (F, m) float32
    last : (F,) bool
    likelihoods : (F,) float32
        Meaningful where ``last``.
    landmark_likelihoods : (F, n) float32
        Meaningful where ``last``.
    """
    resp_size = r.maps.shape[-1]
    a = float(_F(-0.5 / float(_F(parameters.sigma) * _F(parameters.sigma))))
    weights = _view_weights(model, scale, float(parameters.weight_factor), backend)[r.views]
    return backend.kernels.nu_rlms(*model.pdm.arrays(backend), r.maps, params_global, params_local, r.base,
                                   r.img_to_ref, r.ref_to_img, r.visible, weights, _F(parameters.reg_factor),
                                   parameters.num_iterations, _kde(backend, resp_size, a), _F((resp_size - 1) // 2),
                                   parameters.sigma, last)


def _batch_params(params_global, params_local, image_index):
    """A batch's initial parameters, ``(F, 6)`` and ``(F, m)`` float32 (copies), and the image of each face (F,)."""
    g, loc = np.array(params_global, _F, ndmin=2), np.array(params_local, _F, ndmin=2)
    image_index = np.asarray(image_index, np.int64).reshape(-1)
    if not len(g) == len(loc) == len(image_index):
        raise ValueError(f"fit: {len(g)} global, {len(loc)} local parameter sets and {len(image_index)} image indices")
    return g, loc, image_index


def _fit_steps(window_sizes, image_index: np.ndarray, n_scales: int, backend: Backend) -> list:
    """The (scale, window size) steps of a batch's fit over ``n_scales`` patch scales, from its window sizes
    (``(S,)`` for every face or ``(F, S)`` per face, ``S >= n_scales``; 0 skips a scale) and the image of each face
    ``image_index`` (F,): ``(scale, size, faces, images, last)``, with ``faces`` the index of the faces taking the
    step (None: all), ``images`` their image indices and ``last`` whether it is their last scale, on the device,
    copied there before the fit starts (a copy from the host waits for the device)."""
    n_faces = len(image_index)
    ws = np.asarray(window_sizes, np.int64)
    ws = np.broadcast_to(ws, (n_faces,) + ws.shape[-1:])
    if ws.shape[1] < n_scales:
        raise ValueError(f"window_sizes: need one per patch scale ({n_scales}), got {ws.shape[1]}")
    steps = []
    for scale in range(n_scales):
        for size in (ws[:1, scale] if n_faces == 1 else np.unique(ws[:, scale])):
            if size == 0:
                continue
            group = np.flatnonzero(ws[:, scale] == size)
            last = ws[group, scale + 1] == 0 if scale < n_scales - 1 else np.ones(len(group), bool)
            faces = None if len(group) == n_faces else backend.asarray(group)
            steps.append((scale, int(size), faces, backend.asarray(image_index[group]), backend.asarray(last)))
    return steps


@dataclass
class _DeviceFit:
    """A batch's fit (:func:`_fit_on_device`), every array on the backend's device: ``g`` (F, 6), ``p``
    (F, m), ``landmarks`` (F, n, 2), ``success`` (F,) bool, ``view`` (F,) int32, ``has_likelihood`` (F,)
    bool, ``likelihood`` (F,) float32, ``landmark_likelihoods`` (F, n) float32."""

    g: object
    p: object
    landmarks: object
    success: object
    view: object
    has_likelihood: object
    likelihood: object
    landmark_likelihoods: object

    def results(self, backend: Backend) -> "list[FitResult]":
        """Each face's :class:`FitResult`, read back from the device in one go."""
        g, p, lm, ok, view, has_ll, ll, lh = (backend.asnumpy(a) for a in (
            self.g, self.p, self.landmarks, self.success, self.view, self.has_likelihood, self.likelihood,
            self.landmark_likelihoods))
        return [FitResult(g[f].copy(), p[f].copy(), lm[f].copy(), bool(ok[f]), float(ll[f]) if has_ll[f] else None,
                          lh[f].copy() if has_ll[f] else None, int(view[f])) for f in range(len(g))]


def _fit_on_device(model: CLNFModel, images, steps: list, params_global, params_local, parameters: FitParameters,
                   backend: Backend) -> _DeviceFit:
    """:func:`fit_batch` without the read back: ``steps`` from :func:`_fit_steps`, ``params_global`` (F, 6) and
    ``params_local`` (F, m) on the device (copied)."""
    xp = backend.xp
    n_faces, n = len(params_global), model.pdm.n_points
    g, p = xp.array(params_global, dtype=_F), xp.array(params_local, dtype=_F)
    alive = xp.ones(n_faces, bool)  # no failure yet (OpenFace's Fit returns false below 0.25)
    view = xp.zeros(n_faces, np.int32)
    has_likelihood = xp.zeros(n_faces, bool)
    likelihood = xp.zeros(n_faces, _F)
    landmark_likelihoods = xp.zeros((n_faces, n), _F)
    for scale, size, faces, image_idx, last in steps:
        at = slice(None) if faces is None else faces
        live, g_at, p_at = alive[at], g[at], p[at]  # one gather each
        r = patch_responses(model, images, image_idx, g_at, p_at, size, scale, backend)
        g_new, p_new, ends, ll, lh = _fit_scale(model, r, g_at, p_at, scale, _refined(parameters, model, scale), last,
                                                backend)
        g_at = xp.where(live[:, None], g_new, g_at)
        g[at] = g_at
        p[at] = xp.where(live[:, None], p_new, p_at)
        view[at] = xp.where(live, r.views, view[at])
        recorded = live & ends
        has_likelihood[at] = has_likelihood[at] | recorded
        likelihood[at] = xp.where(recorded, ll, likelihood[at])
        landmark_likelihoods[at] = xp.where(recorded[:, None], lh, landmark_likelihoods[at])
        alive[at] = live & ~(g_at[:, 0] < 0.25)
    landmarks = model.pdm.shape_2d_batch(g, p, backend=backend)
    return _DeviceFit(g, p, landmarks, alive, view, has_likelihood, likelihood, landmark_likelihoods)


def fit_batch(model: CLNFModel, images, image_index, params_global, params_local, window_sizes,
              parameters: FitParameters, *, backend: "str | Backend" = "cpu") -> "list[FitResult]":
    """Fit one CLNF model to a batch of faces, coarse to fine over the patch scales.

    Port of ``CLNF::Fit``, LandmarkDetectorModel.cpp, for many faces at once: at each scale the
    faces sharing a window size get their response maps from one area warp and one ``ccnf_response``
    call and their NU-RLMS passes together.  The parameters stay on the device from the first scale to
    the last, which the host waits for once: a face whose fit has failed (scale below 0.25) is masked,
    its parameters and results kept as they were, rather than taken out of the batch.  Each face's
    result is the one it gets alone.

    Parameters
    ----------
    images : (B, H, W) float32
        Grayscale frames (0..255), on the backend's device.
    image_index : array_like (F,) int
        Frame of each face.
    params_global : array_like (F, 6) ; params_local : array_like (F, m)
        Initial parameters.
    window_sizes : array_like (S,) or (F, S) int
        Response window size per scale (0 skips the scale), for all faces or per face.
    parameters : FitParameters
    backend : str or Backend

    Returns
    -------
    list of FitResult
        One per face.
    """
    backend = resolve_device(backend)
    g, loc, image_index = _batch_params(params_global, params_local, image_index)
    steps = _fit_steps(window_sizes, image_index, len(model.scales), backend)
    return _fit_on_device(model, images, steps, backend.asarray(g), backend.asarray(loc), parameters,
                          backend).results(backend)


def frame_images(gray8: np.ndarray, backend: "str | Backend" = "cpu"):
    """A grayscale frame as the fitting functions take it: ``(1, H, W)`` float32 on the device."""
    return resolve_device(backend).asarray(np.asarray(gray8, _F)[None])


def fit(model: CLNFModel, gray: np.ndarray, params_global, params_local, window_sizes, parameters: FitParameters,
        *, backend: "str | Backend" = "cpu") -> FitResult:
    """Fit one CLNF model to one face (:func:`fit_batch` of one).

    Parameters
    ----------
    gray : ndarray (H, W) float32
    params_global : array_like (6,) ; params_local : array_like (m,)
    window_sizes : sequence of int

    Returns
    -------
    FitResult
    """
    backend = resolve_device(backend)
    return fit_batch(model, frame_images(gray, backend), [0], params_global, params_local, window_sizes, parameters,
                     backend=backend)[0]


def detect_landmarks_batch(clnf: CLNF, images, image_index, params_global, params_local, window_sizes=None, *,
                           backend: "str | Backend" = "cpu") -> "list[FitResult]":
    """Fit the main model to a batch of faces, then each hierarchical part to the faces large
    enough for it (one batch per part), and refit the main params to the merged landmarks
    (without validation; see :class:`gpuau.landmarks.tracker.FaceTracker`).

    The host waits for the device twice: for the main fit's scales (which faces each part fits), and for
    the results.

    Port of ``CLNF::DetectLandmarks`` (up to the validator), LandmarkDetectorModel.cpp.

    Parameters
    ----------
    images : (B, H, W) float32
        Grayscale frames (0..255), on the backend's device.
    image_index : array_like (F,) int
    params_global : array_like (F, 6) ; params_local : array_like (F, m)
    window_sizes : array_like (S,) or (F, S) int, optional
        Defaults to the main parameters' initialisation windows.
    backend : str or Backend

    Returns
    -------
    list of FitResult
        One per face; ``success`` is ``Fit``'s; ``part_landmarks`` and ``part_params`` map each part's name
        to its landmarks ``(k, 2)`` and parameters (fitted, or placed by the part's PDM when the face is too
        small for the part).
    """
    backend = resolve_device(backend)
    params = clnf.parameters
    g, loc, image_index = _batch_params(params_global, params_local, image_index)
    ws = params.window_sizes_init if window_sizes is None else window_sizes
    main = _fit_on_device(clnf.model, images, _fit_steps(ws, image_index, len(clnf.model.scales), backend),
                          backend.asarray(g), backend.asarray(loc), params, backend)
    if not (params.refine_hierarchical and clnf.parts):
        return main.results(backend)
    # which faces each part fits, and every array the part stage takes from the host, copied before its
    # first launch (a copy from the host waits for the device)
    main_scale = backend.asnumpy(main.g[:, 0])
    plans = [_PartPlan.make(part, main_scale, image_index, backend) for part in clnf.parts]
    used = np.logical_or.reduce([plan.big for plan in plans])
    refit = backend.asarray(np.flatnonzero(used))
    fits = _map_parts(lambda plan: _fit_part(plan, images, main.landmarks, backend), plans, backend)
    merged = main.landmarks.copy()
    for part, (part_landmarks, _, _) in zip(clnf.parts, fits):
        main_idx, part_idx = _indices(part, backend)
        merged[:, main_idx] = part_landmarks[:, part_idx]
    if used.any():  # refit the main params to the merged landmarks of the faces a part was fitted to
        pdm = clnf.model.pdm
        g_refit, p_refit = pdm.calc_params_batch(merged[refit], backend=backend)
        main.g[refit], main.p[refit] = g_refit, p_refit
        main.landmarks[refit] = pdm.shape_2d_batch(g_refit, p_refit, backend=backend)
    results = main.results(backend)
    xp = backend.xp
    for part, (landmarks, g_part, p_part) in zip(clnf.parts, fits):
        k = landmarks.shape[1]
        state = backend.asnumpy(xp.concatenate([landmarks.reshape(len(landmarks), 2 * k), g_part, p_part], axis=1))
        for res, row in zip(results, state):  # one read per part
            res.part_landmarks[part.name] = row[:2 * k].reshape(k, 2)
            res.part_params[part.name] = (row[2 * k:2 * k + 6], row[2 * k + 6:])
    return results


def _indices(part: Part, backend: Backend) -> tuple:
    """``(main_idx, part_idx)`` of a part on the backend's device (copied there once)."""
    return kept_with(part, (_indices, backend),
                     lambda: (backend.asarray(part.main_idx), backend.asarray(part.part_idx)))


@dataclass
class _PartPlan:
    """What a hierarchical part's fit takes from the host: the faces large enough for it (``big``, on the host),
    their index and their fit's steps (:func:`_fit_steps`) on the device."""

    part: Part
    big: np.ndarray
    faces: object
    steps: list

    @classmethod
    def make(cls, part: Part, main_scale: np.ndarray, image_index: np.ndarray, backend: Backend) -> "_PartPlan":
        """The plan for the faces of main scales ``main_scale`` (F,) in images ``image_index`` (F,)."""
        big = main_scale > 0.9 * part.model.scales[0].patch_scaling
        idx = np.flatnonzero(big)
        steps = _fit_steps(part.parameters.window_sizes_init, image_index[idx], len(part.model.scales), backend)
        return cls(part, big, backend.asarray(idx), steps)


def _fit_part(plan: _PartPlan, images, landmarks, backend: Backend):
    """One hierarchical part fitted to the faces large enough for it (``plan``), initialised from the main
    model's landmarks ``landmarks`` (F, n, 2) on the device (the part loop of ``CLNF::DetectLandmarks``).

    Returns
    -------
    landmarks : (F, k, 2) float32 ; params_global : (F, 6) float32 ; params_local : (F, m) float32
        On the device.  Per face: fitted, or placed by the part's PDM from the main landmarks.
    """
    xp = backend.xp
    part, n_faces = plan.part, len(plan.big)
    ppdm = part.model.pdm
    main_idx, part_idx = _indices(part, backend)
    locs = xp.zeros((n_faces, ppdm.n_points, 2), _F)
    locs[:, part_idx] = landmarks[:, main_idx]
    init_g, init_l = ppdm.calc_params_batch(locs, backend=backend)
    if plan.big.all():  # every face fitted (a tracked face): no placed landmarks to compute
        fit = _fit_on_device(part.model, images, plan.steps, init_g, init_l, part.parameters, backend)
        return fit.landmarks, fit.g, fit.p
    out = ppdm.shape_2d_batch(init_g, init_l, backend=backend)
    if plan.steps:
        at = plan.faces
        fit = _fit_on_device(part.model, images, plan.steps, init_g[at], init_l[at], part.parameters, backend)
        out[at], init_g[at], init_l[at] = fit.landmarks, fit.g, fit.p
    return out, init_g, init_l


def _map_parts(fn, parts: list, backend: Backend) -> list:
    """``[fn(part) for part in parts]``; on the CPU backend with two cores or more, concurrently.

    The parts are independent given the main model's landmarks, so each part's result is the one
    it gets alone.  The first part (the inner face, the largest) runs on the calling thread and
    the others on the helper thread (:mod:`gpuau.cpu.threads`), both with serial kernels (the two
    threads already fill two cores).
    """
    if backend.name != "cpu" or len(parts) < 2 or not threads.can_share():
        return [fn(part) for part in parts]
    rest = threads.submit(lambda: [fn(part) for part in parts[1:]])
    with threads.sharing():
        try:
            first = fn(parts[0])
        finally:
            others = rest.result()
    return [first] + others


def detect_landmarks(clnf: CLNF, gray8: np.ndarray, params_global, params_local, window_sizes=None, *,
                     backend: "str | Backend" = "cpu") -> FitResult:
    """:func:`detect_landmarks_batch` of one face in one frame.

    Parameters
    ----------
    gray8 : ndarray (H, W) uint8
    params_global : array_like (6,) ; params_local : array_like (m,)
    window_sizes : sequence of int, optional

    Returns
    -------
    FitResult
    """
    backend = resolve_device(backend)
    return detect_landmarks_batch(clnf, frame_images(gray8, backend), [0], params_global, params_local, window_sizes,
                                  backend=backend)[0]
