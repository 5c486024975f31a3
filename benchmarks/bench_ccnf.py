"""CCNF response maps and NU-RLMS: the Numba twins vs the ``.cu`` kernels (emulated, and CUDA when a GPU exists).

    NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python -m benchmarks.bench_ccnf [--faces 1 32] [--window 11] [--repeat 5]

Inputs are real: areas of interest of the first frames of default.wmv around OpenFace's reference
landmarks, the main model's CCNF experts of scale 0.25 (N = 68 x faces landmarks, frame k standing in
for face k); NU-RLMS (``clnf._fit_scale``: both passes and the likelihoods) of those faces at that scale
on the CPU backend's response maps.  Prints the best-of-``repeat`` wall and
CPU (process) milliseconds per call, and the largest difference to the twin.  On a shared machine the
CPU column is the steadier one; the emulator is a correctness tool, its timings only show its cost.
"""
import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPUAU_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("GPUAU_MODELS", str(SHARED / "models" / "openface-2.2.0"))
sys.path.insert(0, str(ROOT / "tests"))

from reference import global_params, local_params, read_reference  # noqa: E402

from ccnf_steps import extract_areas, similarity_to_reference, view_index  # noqa: E402
from gpuau.cpu.ccnf_response import ccnf_response  # noqa: E402
from gpuau.device import cuda_available, resolve_device  # noqa: E402
from gpuau.landmarks.clnf import CLNF, _fit_scale, _refined, patch_responses  # noqa: E402
from gpuau.video import open_source  # noqa: E402


def best_ms(fn, repeat, sync=lambda: None):
    """(wall ms, process CPU ms) of the fastest of ``repeat`` calls."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        sync()
        best = min(best, (1e3 * (time.perf_counter() - w), 1e3 * (time.process_time() - c)))
    return best


def inputs(faces: int, ws: int):
    """Areas (68 faces, A, A), weights, alphas, sigmas (one expert per landmark, repeated per face), and
    ``_fit_scale``'s arguments for those faces at scale 0 (minus the backend)."""
    clnf = CLNF.load()
    pdm, ccnf = clnf.model.pdm, clnf.model.scales[0]
    df = read_reference(SHARED / "reference" / "openface-clnf" / "default.csv", nrows=faces)
    gs, locs = global_params(df).astype(np.float32), local_params(df).astype(np.float32)
    areas, views, grays = [], [], []
    for frame in open_source(SHARED / "media" / "default.wmv"):
        if frame.index >= faces:
            break
        g, loc = gs[frame.index], locs[frame.index]
        grays.append(frame.gray.astype(np.float32))
        shape = pdm.calc_shape_2d(g, loc)
        _, ref_to_img = similarity_to_reference(shape, pdm.calc_shape_2d([ccnf.patch_scaling, 0, 0, 0, 0, 0], loc))
        areas.append(extract_areas(frame.gray.astype(np.float32), shape, ref_to_img, ws + ccnf.patch_size[1] - 1))
        views.append(view_index(ccnf, g))
    rep = [np.concatenate([f(v) for v in views]) for f in (ccnf.weights, ccnf.alphas, lambda v: ccnf.sigmas(v, ws))]
    r = patch_responses(clnf.model, np.stack(grays), np.arange(faces), gs, locs, ws, 0, resolve_device("cpu"))
    fit = (clnf.model, r, gs, locs, 0, _refined(clnf.parameters, clnf.model, 0), np.zeros(faces, bool))
    return (np.concatenate(areas), *rep), fit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--window", type=int, default=11, help="response window size (7, 9, 11, 15)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    devices = ["emulated"] + (["cuda"] if cuda_available() else [])
    print(f"window {args.window}, patch 11x11, 7 neurons; best of {args.repeat}; ms per call (wall / CPU)")
    for faces in args.faces:
        (areas, w, alphas, sigmas), fit = inputs(faces, args.window)
        n = len(areas)
        resp = ccnf_response(areas, w, alphas, sigmas)
        cpu = resolve_device("cpu")
        params = _fit_scale(*fit, cpu)[:2]
        rows = [("numba", "ccnf_response", best_ms(lambda: ccnf_response(areas, w, alphas, sigmas), args.repeat), 0.0),
                ("numba", "nu_rlms", best_ms(lambda: _fit_scale(*fit, cpu), args.repeat), 0.0)]
        for name in devices:
            be = resolve_device(name)
            sync = (lambda: be.xp.cuda.Device().synchronize()) if name == "cuda" else (lambda: None)
            d_args = [be.asarray(a) for a in (areas, w, alphas, sigmas)]
            out = be.asnumpy(be.kernels.ccnf_response(*d_args))  # compile
            err = float(np.abs(out - resp).max())
            rows.append((name, "ccnf_response", best_ms(lambda: be.kernels.ccnf_response(*d_args), args.repeat, sync), err))
            d_fit = fit[:1] + (replace(fit[1], maps=be.asarray(fit[1].maps)),) + fit[2:]
            fitted = map(be.asnumpy, _fit_scale(*d_fit, be)[:2])  # compile
            fit_err = max(float(np.abs(a - b).max()) for a, b in zip(fitted, params))
            rows.append((name, "nu_rlms", best_ms(lambda: _fit_scale(*d_fit, be), args.repeat, sync), fit_err))
        print(f"N = 68 x {faces} = {n}")
        for dev, kernel, (wall, cpu), err in rows:
            print(f"  {kernel:14s} {dev:9s} {wall:9.2f} / {cpu:9.2f}   max |diff to numba| {err:.2e}")


if __name__ == "__main__":
    main()
