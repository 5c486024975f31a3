"""``response_areas`` (``pdm_fit.cu``), where a patch scale's response maps are computed, on every backend
against the host steps it replaces (``GetViewIdx``, ``CalcShape2D`` of the shape and of the reference shape,
``AlignShapesWithScale`` and its inverse, the area matrices), bit for bit in the emulator, on OpenFace's
parameters of default.wmv: a frontal face, one turned to the profile view, one moved off its landmarks and
one shrunk; for the main model at its three scales and for the part models."""
import numpy as np
import pytest

from ccnf_steps import similarity_to_reference, view_index
from gpuau.cpu import pdm_fit
from gpuau.cpu.response_areas import area_matrices
from real_faces import FIT_CASES, part_start


def _host_steps(model, scale, g, p, size):
    """The oracle: each step on the host, one face at a time where OpenFace works per face."""
    pdm, ccnf = model.pdm, model.scales[scale]
    views = np.array([view_index(ccnf, gf) for gf in g], np.int32)
    base = np.stack([pdm.calc_shape_2d(gf, pf) for gf, pf in zip(g, p)])
    ref = np.stack([pdm.calc_shape_2d([ccnf.patch_scaling, 0, 0, 0, 0, 0], pf) for pf in p])
    to_ref, to_img = similarity_to_reference(base, ref)
    matrices = np.stack([area_matrices(b, s, size) for b, s in zip(base, to_img)])
    return views, base, np.stack([to_ref, to_img], axis=1), matrices


@pytest.mark.parametrize("model_name, scale, window", FIT_CASES, ids=[f"{m}-s{s}-w{w}" for m, s, w in FIT_CASES])
def test_response_areas_match_host_steps(backend, clnf, fit_faces, model_name, scale, window):
    _, g, p = fit_faces
    model = clnf.model
    if model_name != "main":
        part = next(q for q in clnf.parts if q.name == model_name)
        model = part.model
        g, p = part_start(part, clnf, g[:3], p[:3])
    ccnf = model.scales[scale]
    size = window + ccnf.patch_size[1] - 1
    expected = _host_steps(model, scale, g, p, size)
    mean, pc, _ = model.pdm.arrays(backend)
    got = backend.kernels.response_areas(mean, pc, ccnf.view_arrays(backend)[0], backend.asarray(g),
                                         backend.asarray(p), ccnf.patch_scaling, size)
    for name, e, o in zip(("views", "base", "sims", "matrices"), expected, got):
        o = backend.asnumpy(o)
        assert o.shape == e.shape and o.dtype == e.dtype, name
        if backend.name == "cuda" and name != "views":  # CUDA's sinf/cosf round within an ulp or two of libm's
            np.testing.assert_allclose(o, e, rtol=1e-5, atol=1e-4, err_msg=name)
        else:
            np.testing.assert_array_equal(o, e, err_msg=name)
    if model_name == "main" and len(ccnf.centers) > 1:
        assert len(set(expected[0].tolist())) > 1  # the profile face takes another view


def test_response_areas_of_no_face(backend, clnf):
    model = clnf.model
    mean, pc, _ = model.pdm.arrays(backend)
    views, base, sims, matrices = backend.kernels.response_areas(
        mean, pc, model.scales[0].view_arrays(backend)[0], np.zeros((0, 6), np.float32),
        np.zeros((0, model.pdm.n_modes), np.float32), 0.25, 21)
    assert views.shape == (0,) and base.shape == (0, 68, 2) and sims.shape == (0, 2, 2, 2)
    assert matrices.shape == (0, 68, 2, 3)
    with pytest.raises(ValueError, match="response_areas"):
        backend.kernels.response_areas(mean, pc, model.scales[0].view_arrays(backend)[0], np.zeros((2, 6), np.float32),
                                       np.zeros((3, model.pdm.n_modes), np.float32), 0.25, 21)


def test_shapes_of_a_batch_are_the_pdms(clnf, fit_faces):
    """The twin's shapes are ``shape_2d_batch``'s (one 3D shape per face for both projections)."""
    _, g, p = fit_faces
    pdm = clnf.model.pdm
    base = pdm_fit.shape_2d_batch(pdm.mean_shape, pdm.princ_comp, g, p)
    from gpuau.cpu.response_areas import response_areas
    np.testing.assert_array_equal(response_areas(pdm.mean_shape, pdm.princ_comp, clnf.model.scales[0].centers, g, p,
                                                 0.25, 21)[1], base)
