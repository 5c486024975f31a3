"""PDM: reconstruct OpenFace's landmarks from its own parameters, and refit parameters to them."""
from pathlib import Path

import numpy as np
import pytest

from gpuau.landmarks.pdm import AU_PDM, PDM
from gpuau.landmarks.rotation import (
    axis_angle_to_euler,
    euler_to_axis_angle,
    euler_to_rotation_matrix,
    rotation_matrix_to_euler,
)
from reference import global_params, landmarks_2d, local_params, read_reference


@pytest.fixture(scope="module")
def reference(reference_dir):
    df = read_reference(reference_dir / "default.csv")
    return global_params(df), local_params(df), landmarks_2d(df)


@pytest.fixture(scope="module")
def pdm(models_dir):
    return PDM.load()


def test_shapes(pdm):
    assert pdm.mean_shape.shape == (204,) and pdm.princ_comp.shape == (204, 34)
    assert pdm.eigen_values.shape == (34,) and pdm.mean_shape.dtype == np.float32
    assert pdm.calc_shape_3d(np.zeros(34)).shape == (68, 3)


def test_au_copy_matches_main(pdm):
    au = PDM.load(AU_PDM)
    np.testing.assert_array_equal(au.mean_shape, pdm.mean_shape)
    np.testing.assert_array_equal(au.princ_comp, pdm.princ_comp)


@pytest.mark.parametrize("rel", [
    "lib/local/LandmarkDetector/model/model_inner/pdms/pdm_51_inner.txt",
    "lib/local/LandmarkDetector/model/model_eye/pdms/pdm_28_l_eye_3D_closed.txt",
])
def test_part_pdms_load(rel):
    p = PDM.load(rel)
    assert p.princ_comp.shape[0] == p.mean_shape.shape[0] == 3 * p.n_points


def test_reconstruct_reference_landmarks(pdm, reference):
    g, l_, lm = reference
    for t in range(0, len(g), 7):
        shape = pdm.calc_shape_2d(g[t], l_[t])
        # CSV rounds landmarks to 0.1 px and params to 3 decimals
        assert np.abs(shape - lm[t]).max() < 0.15


def test_calc_params_refits_reference(pdm, reference):
    g, l_, lm = reference
    for t in (0, 100, 250):
        g2, l2 = pdm.calc_params(lm[t], g[t, 1:4])
        assert np.abs(pdm.calc_shape_2d(g2, l2) - lm[t]).mean() < 0.1
        np.testing.assert_allclose(g2, g[t], atol=0.02)


def test_calc_params_from_box_fills_box(pdm):
    box = np.array([100, 120, 200, 220], np.float32)
    g = pdm.calc_params_from_box(box)
    bb = pdm.calc_bounding_box(g, np.zeros(34))
    np.testing.assert_allclose(bb[:2] + bb[2:] / 2, box[:2] + box[2:] / 2, atol=1e-3)


def test_rotation_round_trips():
    e = np.array([0.1, -0.3, 0.2], np.float32)
    np.testing.assert_allclose(rotation_matrix_to_euler(euler_to_rotation_matrix(e)), e, atol=1e-6)
    np.testing.assert_allclose(axis_angle_to_euler(euler_to_axis_angle(e)), e, atol=1e-6)


def test_jacobian_matches_finite_differences(pdm, reference):
    g, l_, _ = reference
    g0, l0 = g[50].astype(np.float64), l_[50].astype(np.float64)
    jac, jac_t = pdm.calc_jacobian(g0, l0)
    assert jac.shape == (136, 40) and jac_t.shape == (40, 136)
    # local-parameter columns are exact derivatives of the linear model
    for k in (0, 5, 20):
        d = np.zeros(34); d[k] = 1.0
        diff = pdm.calc_shape_2d(g0, l0 + d) - pdm.calc_shape_2d(g0, l0)
        np.testing.assert_allclose(np.concatenate([diff[:, 0], diff[:, 1]]), jac[:, 6 + k], atol=2e-3)
    # the rigid Jacobian is the first six columns
    np.testing.assert_array_equal(pdm.calc_rigid_jacobian(g0, l0)[0], jac[:, :6])


def test_clamp(pdm):
    _, p = pdm.clamp(np.zeros(6), np.full(34, 1e6, np.float32))
    np.testing.assert_allclose(p, 3 * np.sqrt(pdm.eigen_values))


SHAPES = Path(__file__).parent / "data" / "pdm_shapes_openface.npz"
PDM_FILES = {"main": "lib/local/LandmarkDetector/model/pdms/In-the-wild_aligned_PDM_68.txt",
             "inner": "lib/local/LandmarkDetector/model/model_inner/pdms/pdm_51_inner.txt",
             "eye": "lib/local/LandmarkDetector/model/model_eye/pdms/pdm_28_l_eye_3D_closed.txt"}


@pytest.mark.parametrize("name", sorted(PDM_FILES))
def test_shapes_are_openfaces_bit_for_bit(name, models_dir):
    """``CalcShape3D`` (OpenBLAS's sgemm order) and ``CalcShape2D`` (the fused rotation and projection) as
    OpenFace's own compiled objects compute them (``data/make_pdm_shapes_openface.py``): the main PDM (34 modes,
    OpenFace's fits of the reference videos and random parameters), the inner face's (32 modes, 153 rows: the
    sgemm's last row summed in halves) and an eye's (10 modes: one chain)."""
    pdm = PDM.load(PDM_FILES[name])
    with np.load(SHAPES) as d:
        g, p = d[f"{name}/params_global"], d[f"{name}/params_local"]
        want_3d, want_2d = d[f"{name}/shape_3d"], d[f"{name}/shape_2d"]
    got_3d = np.stack([pdm.calc_shape_3d(pi) for pi in p])
    got_2d = np.stack([pdm.calc_shape_2d(gi, pi) for gi, pi in zip(g, p)])
    np.testing.assert_array_equal(got_3d.view(np.int32), want_3d.view(np.int32))
    np.testing.assert_array_equal(got_2d.view(np.int32), want_2d.view(np.int32))


def test_calc_params_from_box_fills_box_with_a_rotated_shape(pdm):
    """PDM::CalcParams with a box and a rotation: the extents are the rotated mean shape's, so each rotation
    hypothesis's shape is centred in the box."""
    box = np.array([100, 120, 200, 220], np.float32)
    for rot in ((0.0, 0.5236, 0.0), (0.0, -0.7, 0.3), (0.4, 0.0, -0.5)):
        g = pdm.calc_params_from_box(box, np.zeros(34, np.float32), rot)
        np.testing.assert_allclose(g[1:4], rot, atol=1e-6)
        bb = pdm.calc_bounding_box(g, np.zeros(34))
        np.testing.assert_allclose(bb[:2] + bb[2:] / 2, box[:2] + box[2:] / 2, atol=1e-3)
