"""How closely any reimplementation can match OpenFace's CSVs: the floor set by float rounding.

Two measurements on every shared reference video:

1. Sensitivity (``--ulp``): our pipeline tracks the video twice, once as is and once with ONE float32
   ulp added to one fitted PDM parameter after the first frame (the size of a different summation
   order anywhere in the fit).  The table gives the landmark divergence and the ``compare_openface``
   figures of the nudged run against the plain one; they are what two exact implementations that
   round one operation differently get against each other (OpenFace's own CCNF responses come from
   OpenBLAS ``sgemm``, whose kernel, and so its rounding, depends on the CPU).
2. Per-frame parity (``--step``): one tracking step (CLNF fit with the tracking windows) from
   OpenFace's frame ``t - 1`` (rebuilt from its printed landmarks and parameters,
   ``au_harness.reference_landmarks``) against its frame ``t``, next to the same from our own
   printed-and-rebuilt output against ours.  Equal errors mean our fit takes OpenFace's step from
   OpenFace's state as closely as the printed precision can show.

    python benchmarks/bench_noise_floor.py [--ulp] [--step] [--videos default changeLighting noise ...]
                                           [--reference DIR]

Videos are the shared reference videos or the derived clips of ``tests/derived_media.py``; OpenFace's CSVs
come from the shared references, or from ``--reference DIR`` (``DIR/<name>.csv``, e.g. written by an OpenFace
build run on the clips: ``benchmarks/versus_openface.py``).  Without an OpenFace CSV, ``--ulp`` prints the
nudged runs against the plain one only.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPUAU_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("GPUAU_MODELS", str(SHARED / "models" / "openface-2.2.0"))
sys.path.insert(0, str(ROOT / "tests"))

from au_harness import VIDEOS as AU_VIDEOS, reference_landmarks  # noqa: E402
from derived_media import CLIPS, clip_frames  # noqa: E402
from reference import GLOBAL_PARAMS, LOCAL_PARAMS, read_reference  # noqa: E402

from gpuau.au import AUAnalyzer  # noqa: E402
from gpuau.landmarks.clnf import detect_landmarks  # noqa: E402
from gpuau.landmarks.tracker import FaceTracker  # noqa: E402
from gpuau.pipeline import Analyzer  # noqa: E402
from gpuau.video import array_frames, open_source  # noqa: E402

REFERENCE = SHARED / "reference" / "openface-clnf"
MEDIA = SHARED / "media"
VIDEOS = {**AU_VIDEOS, "image_sequence": "image_sequence"}
NUDGES = [("global", 4), ("global", 5), ("global", 0), ("local", 0), ("local", 5)]
"""Parameters nudged by one ulp: p_tx, p_ty, p_scale, p_0, p_5."""


def track(analyzer: Analyzer, frames: list, nudge=None) -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
    """Landmarks (N, 68, 2), success (N,) and PDM params (N, 40) of FeatureExtraction's tracking;
    ``nudge`` ``(kind, k)`` adds one float32 ulp to that parameter after the first frame."""
    clnf, mtcnn, validation = analyzer.loaded_models()
    tracker = FaceTracker(clnf, detect=mtcnn.detect_box, validate=validation.check,
                          device=analyzer.backend)
    lm, ok, params = [], [], []
    for i, f in enumerate(frames):
        r = tracker.track(f.image, f.gray)
        lm.append(r.landmarks)
        ok.append(r.detection_success)
        params.append(np.concatenate([r.params_global, r.params_local]))
        if i == 0 and nudge is not None:
            name = "params_global" if nudge[0] == "global" else "params_local"
            p = getattr(tracker, name).copy()
            p[nudge[1]] = np.nextafter(p[nudge[1]], np.float32(np.inf))
            setattr(tracker, name, p)
    return np.array(lm, np.float32), np.array(ok), np.array(params, np.float64)


def aus(frames: list, landmarks: np.ndarray, success: np.ndarray) -> dict:
    a = AUAnalyzer()
    a.add_frames(np.stack([f.image for f in frames]), landmarks, success)
    return a.finish()


def figures(a: dict, b: dict) -> str:
    """``compare_openface``'s AU figures of two AU tables, intensities printed to 2 decimals."""
    r, mae, agree = {}, [], {}
    for k in a:
        x, y = np.round(a[k], 2), np.round(b[k], 2)
        if k.endswith("_r"):
            mae.append(np.abs(x - y).mean())
            if x.std() > 1e-6 and y.std() > 1e-6:
                r[k] = np.corrcoef(x, y)[0, 1]
        else:
            agree[k] = np.mean((x >= 0.5) == (y >= 0.5))
    worst, worst_c = min(r, key=r.get), min(agree, key=agree.get)
    return (f"AU_r r min {r[worst]:.4f} ({worst[:4]}) mean {np.mean(list(r.values())):.4f}, MAE max {max(mae):.3f}, "
            f"AU_c min {agree[worst_c]:.3f} ({worst_c[:4]})")


def openface_aus(df: pd.DataFrame, names) -> dict:
    return {k: df[k].to_numpy(np.float64) for k in names}


def video_frames(name: str) -> list:
    """The decoded frames of a shared reference video or a derived clip."""
    if name in CLIPS:
        return list(array_frames(*clip_frames(name, MEDIA)))
    return list(open_source(MEDIA / VIDEOS[name]))


def openface_csv(name: str, reference: "Path | None") -> "Path | None":
    """OpenFace's CSV of ``name``, from ``reference`` or the shared references; None where neither has it."""
    paths = [d / f"{name}.csv" for d in (reference, REFERENCE) if d is not None]
    return next((p for p in paths if p.is_file()), None)


def sensitivity(name: str, analyzer: Analyzer, reference: "Path | None" = None) -> None:
    frames = video_frames(name)
    lm, ok, _ = track(analyzer, frames)
    plain = aus(frames, lm, ok)
    csv = openface_csv(name, reference)
    if csv is not None:
        print(f"{name}: ours vs OpenFace:                  {figures(openface_aus(read_reference(csv), plain), plain)}")
    else:
        print(f"{name}: no OpenFace CSV (--reference DIR); our plain run against nudged ones:")
    for kind, k in NUDGES:
        lm1, ok1, _ = track(analyzer, frames, (kind, k))
        label = f"1 ulp on {kind} param {k} ({np.abs(lm1 - lm).mean():.4f} px)"
        print(f"  {label:40s} vs ours: {figures(plain, aus(frames, lm1, ok1))}")


def one_step(name: str, analyzer: Analyzer, reference: "Path | None" = None, frames_max: int = 150) -> None:
    csv = openface_csv(name, reference)
    if csv is None:
        print(f"{name}: --step needs OpenFace's CSV (--reference DIR)")
        return
    frames = video_frames(name)[:frames_max]
    df = read_reference(csv, nrows=len(frames))
    lm, ok, params = track(analyzer, frames)
    printed = {f"x_{i}": np.round(lm[:, i, 0], 1) for i in range(68)}
    printed.update({f"y_{i}": np.round(lm[:, i, 1], 1) for i in range(68)})
    printed.update({c: np.round(params[:, j], 3) for j, c in enumerate(GLOBAL_PARAMS + LOCAL_PARAMS)})
    printed["success"] = ok.astype(float)
    ours_rebuilt = reference_landmarks(pd.DataFrame(printed))
    theirs_rebuilt = reference_landmarks(df)
    clnf = analyzer.loaded_models()[0]
    windows = clnf.parameters.window_sizes_small
    pdm = clnf.model.pdm

    def step_error(rebuilt: np.ndarray) -> float:
        errs = []
        for t in range(1, len(frames)):
            g, p = pdm.calc_params(rebuilt[t - 1])
            fit = detect_landmarks(clnf, frames[t].gray, g, p, windows, backend=analyzer.backend)
            errs.append(np.abs(fit.landmarks - rebuilt[t]).mean())
        return float(np.mean(errs))

    print(f"{name}: rebuilding printed output costs {np.abs(ours_rebuilt - lm)[ok].mean():.4f} px; one tracking step "
          f"from the rebuilt frame t-1 misses the rebuilt frame t by {step_error(theirs_rebuilt):.4f} px (OpenFace's) "
          f"and {step_error(ours_rebuilt):.4f} px (ours); ours vs OpenFace's rebuilt landmarks "
          f"{np.abs(lm - theirs_rebuilt)[ok].mean():.4f} px, first frame {np.abs(lm[0] - theirs_rebuilt[0]).mean():.4f} px")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ulp", action="store_true", help="sensitivity to one float32 ulp")
    ap.add_argument("--step", action="store_true", help="one tracking step from OpenFace's state")
    ap.add_argument("--videos", nargs="+", default=list(VIDEOS), choices=[*VIDEOS, *CLIPS])
    ap.add_argument("--reference", type=Path, metavar="DIR", help="OpenFace's CSVs, DIR/<video>.csv")
    args = ap.parse_args()
    an = Analyzer(device="cpu")
    for v in args.videos:
        if args.step or not args.ulp:
            one_step(v, an, args.reference)
        if args.ulp or not args.step:
            sensitivity(v, an, args.reference)
