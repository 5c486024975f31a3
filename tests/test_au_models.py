"""AU model files: the list files, the binary SVR/SVM regressors and the triangulation."""
from __future__ import annotations

import numpy as np

from gpuau.au.predictors import StackedAUModels, decision_values, presence, project
from gpuau.models.au_file import load_au_models, parse_au_regressor
from gpuau.models.store import AU_DIR
from gpuau.models.tris_file import load_tris


def test_feature_extraction_models(models_dir):
    m = load_au_models(models_dir)
    assert list(m.reg_names) == ["AU04", "AU06", "AU07", "AU10", "AU12", "AU14",  # static SVRs, then dynamic
                                 "AU01", "AU02", "AU05", "AU09", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45"]
    assert list(m.cls_names) == ["AU04", "AU05", "AU06", "AU07", "AU10", "AU12", "AU14", "AU23",
                                 "AU01", "AU02", "AU09", "AU15", "AU17", "AU20", "AU25", "AU26", "AU28", "AU45"]
    assert m.reg_weights.shape == (4702, 17) and m.cls_weights.shape == (4702, 18)
    assert m.reg_dynamic.sum() == 11 and m.cls_dynamic.sum() == 10
    assert (m.reg_cutoff[~m.reg_dynamic] == -1).all() and (m.reg_cutoff[m.reg_dynamic] > 0).all()
    # every model shares the same feature means
    assert np.array_equal(m.reg_means, np.broadcast_to(m.reg_means[0], m.reg_means.shape))
    assert set(zip(m.cls_pos, m.cls_neg)) == {(1.0, 0.0), (0.0, 1.0)}


def test_regressor_values_against_bytes(models_dir):
    root = models_dir / AU_DIR
    path = root / "svr_combined" / "AU_1_dynamic_intensity_comb.dat"
    raw = path.read_bytes()
    r = parse_au_regressor(path)
    assert int(r["kind"]) == 1 and r["cutoff"] == np.frombuffer(raw, "<f8", 1, 4)[0] == 0.55
    # header of the means matrix: rows, cols, CV_64F; then the first mean
    assert list(np.frombuffer(raw, "<i4", 3, 12)) == [1, 4702, 6]
    assert r["means"][0] == np.frombuffer(raw, "<f8", 1, 24)[0]
    assert r["bias"] == np.frombuffer(raw, "<f8", 1, len(raw) - 8)[0]
    svm = root / "svm_combined" / "AU_12_static.dat"
    raw = svm.read_bytes()
    s = parse_au_regressor(svm)
    assert int(s["kind"]) == 4 and (s["pos"], s["neg"]) == tuple(np.frombuffer(raw, "<f8", 2, len(raw) - 16))
    assert s["weights"].shape == (4702, 1) and s["weights"][-1, 0] == np.frombuffer(raw, "<f8", 1, len(raw) - 32)[0]


def test_static_models(models_dir):
    m = load_au_models(models_dir, dynamic=False)
    assert len(m.reg_names) == 17 and len(m.cls_names) == 18
    assert not m.reg_dynamic.any() and not m.cls_dynamic.any()


def test_triangulation(models_dir):
    t = load_tris(models_dir)
    assert t.shape == (111, 3) and t.dtype == np.int32
    assert t[:3].tolist() == [[58, 67, 59], [60, 49, 48], [58, 59, 6]] and t.min() == 0 and t.max() == 67


def test_stacked_prediction_equals_openface_formula(models_dir):
    """x @ W + (b - means @ W) - median @ W == OpenFace's (x - means - median) @ w + b."""
    m = load_au_models(models_dir)
    s = StackedAUModels.from_models(m)
    rng = np.random.default_rng(0)
    hog, geom = rng.uniform(0, 0.3, (5, 4464)), rng.normal(0, 5, (5, 238))
    med = np.concatenate([rng.uniform(0, 0.3, 4464), rng.normal(0, 5, 238)])
    got = decision_values(s, project(s.weights, hog, geom), project(s.weights, med[None, :4464], med[None, 4464:])[0])
    x = np.concatenate([hog, geom], 1)
    for k in range(17):
        sub = med if m.reg_dynamic[k] else 0.0
        np.testing.assert_allclose(got[:, k], (x - m.reg_means[k] - sub) @ m.reg_weights[:, k] + m.reg_bias[k], rtol=1e-9, atol=1e-9)
    for k in range(18):
        sub = med if m.cls_dynamic[k] else 0.0
        want = (x - m.cls_means[k] - sub) @ m.cls_weights[:, k] + m.cls_bias[k]
        np.testing.assert_array_equal(presence(s, got)[:, k], np.where(want > 0, m.cls_pos[k], m.cls_neg[k]))


def test_stacked_models_move_their_arrays_to_a_device(models_dir):
    """``to_backend`` puts every array the predictions read on the device and keeps the rest; the
    host backends get the models themselves."""
    import types

    from gpuau.device import resolve_device

    m = StackedAUModels.from_models(load_au_models(dynamic=True))
    assert m.to_backend(resolve_device("cpu")) is m
    device = types.SimpleNamespace(xp=types.SimpleNamespace(), asarray=lambda a: ("on device", a))  # Backend.asarray
    d = m.to_backend(device)
    for name in ("weights", "offset", "dynamic", "cls_pos", "cls_neg"):
        assert getattr(d, name)[0] == "on device" and getattr(d, name)[1] is getattr(m, name)
    assert d.reg_names == m.reg_names and d.cls_names == m.cls_names and d.cutoff is m.cutoff


def test_static_intensities_are_clipped_to_openfaces_scale():
    """FaceLandmarkImg's static AU intensities are clipped to [0, 5] as the videos' are."""
    from gpuau.au.analyzer import static_au_values

    models = StackedAUModels(reg_names=["AU01"], cls_names=["AU01"], weights=np.zeros((3, 2)),
                             offset=np.array([7.0, 1.0]), dynamic=np.zeros(2, bool), cutoff=np.array([-1.0]),
                             cls_pos=np.array([1.0]), cls_neg=np.array([0.0]))
    assert static_au_values(models, np.zeros((1, 2)), np.zeros((1, 1))) == {"AU01_r": 5.0, "AU01_c": 1.0}
    models.offset[0] = -2.0
    assert static_au_values(models, np.zeros((1, 2)), np.zeros((1, 1)))["AU01_r"] == 0.0
