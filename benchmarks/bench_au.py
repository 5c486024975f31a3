"""AU stage speed on the CPU, ms per face: alignment (PDM refit + masked similarity warp), FHOG
(one face per call and batched), geometry + projections, the sequential step (running medians,
prediction, history) of one stream and of 8 streams batched by ``add_features_batch``, and the whole
``AUAnalyzer.add_frame``.  With ``--accuracy`` also runs every shared reference
video (and the FaceLandmarkImg images) through the AU stage on OpenFace's own landmarks and prints
the ``compare_openface`` figures.

    python benchmarks/bench_au.py [--frames 60] [--repeat 3] [--accuracy]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPUAU_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("GPUAU_MODELS", str(SHARED / "models" / "openface-2.2.0"))
sys.path.insert(0, str(ROOT / "tests"))

from au_harness import VIDEOS, reference_landmarks, run_video, write_candidate  # noqa: E402
from media import read_frames  # noqa: E402
from reference import compare, landmarks_2d, read_reference  # noqa: E402

from gpuau.au import AUAnalyzer, predict_static_aus  # noqa: E402
from gpuau.au.analyzer import add_features_batch, align_faces  # noqa: E402
from gpuau.au.predictors import StackedAUModels, project  # noqa: E402
from gpuau.cpu.fhog import fhog  # noqa: E402
from gpuau.features.geometry import geometry_descriptor  # noqa: E402
from gpuau.models.au_file import load_au_models  # noqa: E402

REFERENCE = SHARED / "reference" / "openface-clnf"
MEDIA = SHARED / "media"


def best_ms(fn, n: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * min(times) / n


def speed(n_frames: int, repeat: int):
    df = read_reference(REFERENCE / "default.csv")
    lm = reference_landmarks(df)[:n_frames]
    frames = read_frames(MEDIA / "default.wmv", n_frames)
    an = AUAnalyzer()
    pdm, tris, models = an.pdm, an.triangulation, an.models
    aligned, params_local = align_faces(frames, lm, pdm, tris)[:2]  # also compiles the kernels
    hog = fhog(aligned)
    geo = geometry_descriptor(pdm.princ_comp, params_local)
    rows = {
        "alignment (CalcParams + warp + mask)": best_ms(lambda: align_faces(frames, lm, pdm, tris), n_frames, repeat),
        "FHOG, one face per call": best_ms(lambda: [fhog(a[None]) for a in aligned], n_frames, repeat),
        f"FHOG, batch of {n_frames}": best_ms(lambda: fhog(aligned), n_frames, repeat),
        "geometry + projections (batched)": best_ms(
            lambda: project(models.weights, hog, geometry_descriptor(pdm.princ_comp, params_local)), n_frames, repeat),
    }

    def sequential():
        a = AUAnalyzer()
        for h, g in zip(hog, geo):
            a.add_features(h, g, True)

    rows["running medians + prediction (sequential)"] = best_ms(sequential, n_frames, repeat)

    def streams(count=8):
        group = [AUAnalyzer() for _ in range(count)]
        for i in range(n_frames):
            rows_ = [(i + k) % n_frames for k in range(count)]
            add_features_batch(group, hog[rows_], geo[rows_], np.ones(count, bool), np.zeros(count))

    rows["the same, 8 streams per add_features_batch"] = best_ms(streams, 8 * n_frames, repeat)

    def whole():
        a = AUAnalyzer()
        for f, l in zip(frames, lm):
            a.add_frame(f, l, True)
        a.finish()

    rows["AUAnalyzer.add_frame end to end"] = best_ms(whole, n_frames, repeat)

    def batched():
        a = AUAnalyzer()
        a.add_frames(np.stack(frames), lm, np.ones(n_frames, bool))
        a.finish()

    rows[f"AUAnalyzer.add_frames, batch of {n_frames}"] = best_ms(batched, n_frames, repeat)
    print(f"default.wmv, {n_frames} frames, CPU ({os.cpu_count()} cores), best of {repeat}")
    for k, v in rows.items():
        print(f"  {k:45s} {v:8.2f} ms/face")


def accuracy():
    with tempfile.TemporaryDirectory() as tmp:
        for name, video in VIDEOS.items():
            df = read_reference(REFERENCE / f"{name}.csv")
            aus = run_video(MEDIA, df, video, reference_landmarks(df))
            res = compare(REFERENCE / f"{name}.csv", write_candidate(Path(tmp) / f"{name}.csv", df, aus), SHARED)
            r = {k: v for k, v in res["au_r"].items() if v == v}
            print(f"{name}: {res['frames_both_success']} tracked frames; AU_r Pearson min {min(r.values()):.4f} "
                  f"({min(r, key=r.get)}) mean {np.mean(list(r.values())):.4f}; MAE max {max(res['au_mae'].values()):.4f} "
                  f"mean {np.mean(list(res['au_mae'].values())):.4f}; AU_c agreement min "
                  f"{min(res['au_c_agreement'].values()):.4f} mean {res['au_c_agreement_mean']:.4f}")
            print("   r:  " + " ".join(f"{k[:4]}={v:.3f}" for k, v in res["au_r"].items()))
            print("   mae:" + " ".join(f"{k[:4]}={v:.3f}" for k, v in res["au_mae"].items()))
            print("   c:  " + " ".join(f"{k[:4]}={v:.3f}" for k, v in res["au_c_agreement"].items()))
    models = StackedAUModels.from_models(load_au_models(dynamic=False))
    err, agree = [], []
    for ref in sorted((REFERENCE / "images").glob("*.csv")):
        df = read_reference(ref)
        img = cv2.imread(str(MEDIA / f"{ref.stem}.jpg"))
        for i, lm in enumerate(landmarks_2d(df)):
            out = predict_static_aus(img, lm, models)
            err += [abs(round(v, 2) - df.loc[i, c]) for c, v in out.items() if c.endswith("_r")]
            agree += [v == df.loc[i, c] for c, v in out.items() if c.endswith("_c")]
    print(f"images (FaceLandmarkImg, static models, 0.1 px landmarks): {len(agree) // 18} faces; AU_r MAE "
          f"{np.mean(err):.4f} (max {np.max(err):.2f}); AU_c agreement {np.mean(agree):.4f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--accuracy", action="store_true")
    args = ap.parse_args()
    speed(args.frames, args.repeat)
    if args.accuracy:
        accuracy()
