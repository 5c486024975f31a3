"""The PDM fitting kernels of ``pdm_fit.cu`` on every backend, against their Numba twins, bit for bit in
the emulator:

* NU-RLMS at one patch scale (``backend.kernels.nu_rlms`` through ``clnf._fit_scale``) over real
  response maps of default.wmv: parameters, end flags and likelihoods, for the main model at its three
  scales and for the part models (inner face with its non-uniform weights, the eyes), with faces that
  see their maps from a side view (invisible landmarks), start off their landmarks (offsets clamped to
  the window) or shrink below the 0.30 scale that ends a fit after the rigid pass;
* ``PDM::CalcParams`` (``backend.kernels.calc_params_batch`` through ``PDM.calc_params_batch``) on
  OpenFace's landmarks of default.wmv for the main, part and AU PDMs, with missing landmarks, a start
  rotation and a face without landmarks."""
import numpy as np
import pytest

from backends import devices_only
from gpuau.device import resolve_device
from gpuau.landmarks.clnf import _fit_scale, _refined, patch_responses
from gpuau.landmarks.pdm import AU_PDM, PDM
from real_faces import FIT_CASES, part_start
from reference import landmarks_2d, read_reference


@devices_only
@pytest.mark.parametrize("model_name, scale, window", FIT_CASES, ids=[f"{m}-s{s}-w{w}" for m, s, w in FIT_CASES])
def test_fit_scale_matches_twin(backend, clnf, fit_faces, model_name, scale, window):
    images, gs, ls = fit_faces
    if model_name == "main":
        model, parameters = clnf.model, clnf.parameters
    else:
        part = next(p for p in clnf.parts if p.name == model_name)
        model, parameters = part.model, part.parameters
        gs, ls = part_start(part, clnf, gs[:3], ls[:3])
    n_faces = len(gs)
    p = _refined(parameters, model, scale)
    cpu = resolve_device("cpu")
    r = patch_responses(model, images, np.arange(n_faces), gs, ls, window, scale, cpu)
    last = np.array([True, True, False, False])[:n_faces]
    expected = _fit_scale(model, r, gs, ls, scale, p, last, cpu)
    got = _fit_scale(model, r, gs, ls, scale, p, last, backend)
    _assert_matches(got, expected, backend, ("params_global", "params_local", "last", "likelihoods",
                                             "landmark_likelihoods"))
    if model_name == "main":
        # the cases the test is for are in the data: a side view with invisible landmarks that ends here (its
        # likelihood the mean over its visible landmarks), a face that ends after the rigid pass, faces that converge
        # and a face that does not end here
        assert (r.visible[1] == 0).any() and expected[2][1]
        assert expected[2][3] and not last[3] and not expected[2][2]
        assert np.isfinite(expected[0]).all() and all(np.isfinite(expected[3][f]) for f in np.flatnonzero(expected[2]))


def _assert_matches(got, expected, backend, names):
    for name, e, o in zip(names, expected, got):
        e, o = np.asarray(e), backend.asnumpy(o)
        assert o.shape == e.shape and o.dtype == e.dtype, name
        if backend.name == "cuda":  # CUDA's sinf/cos/exp round within an ulp or two of libm's
            np.testing.assert_allclose(o, e, rtol=1e-3, atol=1e-3, err_msg=name)
        else:
            np.testing.assert_array_equal(o, e, err_msg=name)


@pytest.mark.parametrize("pdm_name", ["main", "inner", "left_eye_28", "au"])
def test_calc_params_matches_twin(backend, clnf, reference_dir, models_dir, pdm_name):
    lm = landmarks_2d(read_reference(reference_dir / "default.csv", nrows=6)).astype(np.float32)
    if pdm_name in ("main", "au"):
        pdm = clnf.model.pdm if pdm_name == "main" else PDM.load(AU_PDM)
        targets = lm.copy()
        targets[2, [3, 10, 40]] = 0  # missing landmarks (x == 0)
        targets[5] = 0  # a face without landmarks
    else:
        part = next(p for p in clnf.parts if p.name == pdm_name)
        pdm = part.model.pdm
        targets = np.zeros((len(lm), pdm.n_points, 2), np.float32)  # as a part's fit starts: most points missing
        targets[:, part.part_idx] = lm[:, part.main_idx]
    rotations = np.zeros((len(targets), 3), np.float32)
    rotations[1] = [0.1, -0.2, 0.05]
    expected = pdm.calc_params_batch(targets, rotations)
    for f in range(len(targets)):  # each face's params are the ones it gets alone
        np.testing.assert_array_equal(pdm.calc_params(targets[f], rotations[f])[0], expected[0][f])
    if pdm_name in ("main", "au"):
        assert not expected[0][5].any() and not expected[1][5].any()
    _assert_matches(pdm.calc_params_batch(targets, rotations, backend=backend), expected, backend,
                    ("params_global", "params_local"))


@pytest.mark.parametrize("pdm_name", ["main", "inner", "left_eye_28"])
def test_shape_2d_batch_matches_twin(backend, clnf, fit_faces, pdm_name):
    """``PDM::CalcShape2D`` of a batch (the profile, off and shrunk faces included) on every backend equals the
    Numba twin's, which is each face's ``calc_shape_2d``."""
    _, g, p = fit_faces
    pdm = clnf.model.pdm
    if pdm_name != "main":
        part = next(q for q in clnf.parts if q.name == pdm_name)
        pdm = part.model.pdm
        g, p = part_start(part, clnf, g, p)
    expected = np.stack([pdm.calc_shape_2d(gf, pf) for gf, pf in zip(g, p)])
    got = pdm.shape_2d_batch(backend.asarray(g), backend.asarray(p), backend=backend)
    _assert_matches([got], [expected], backend, ["shapes"])


def test_nu_rlms_refuses_a_kde_table_its_maps_would_read_past():
    """pdm_fit.cu's mean shift reads the table's kernel nearest each offset, (10 R)^2 of them for an R x R map: a
    shorter table was read past its end in silence (a GPU's memory, no error)."""
    from gpuau.kernels.nu_rlms import nu_rlms

    backend, z = resolve_device("emulated"), np.zeros
    n, m, r = 3, 2, 5
    args = dict(mean=z(3 * n), pc=z((3 * n, m)), eig=z(m), responses=z((1, n, r, r), np.float32), g=z((1, 6)),
                p=z((1, m)), base=z((1, n, 2)), img_to_ref=z((1, 2, 2)), ref_to_img=z((1, 2, 2)),
                visible=z((1, n), np.int32), weights=z((1, 2 * n)), reg_factor=1.0, n_iter=1, half=1.0, sigma=1.0,
                last=z(1, np.int32))
    with pytest.raises(ValueError, match=r"kde must be \(2500, 25\), got \(2400, 25\)"):
        nu_rlms(backend, kde=z((2400, r * r), np.float32), **args)
