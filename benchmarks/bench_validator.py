"""Speed of the detection validator and of the piece-wise affine warp (PAW) rasteriser, ms per call.

    python benchmarks/bench_validator.py [--frames 60] [--repeat 5] [--clock wall|cpu]

On OpenFace's own landmarks and pose of ``default.wmv`` (reference CSV), times:

* ``DetectionValidator.check`` (view choice, PAW warp, normalisation, CNN) and its parts: the warp and
  normalisation of one face (``validator_faces``, the Numba twin of the GPU kernel), the warp alone
  (``paw.warp``: coefficients, maps, remap) and ``cnn_forward``;
* ``cnn_forward`` again with a Numba parallel kernel (the CCNF patch-expert warps) run between
  calls, as in the tracker, where a BLAS thread pool would fight Numba's threads for the cores;
* the AU stage's face mask (``features.align.face_mask``: PAW raster scan of the 111-triangle
  face on the 112 x 112 grid) and ``paw.triangle_map`` alone.

Each figure is the best of ``--repeat`` passes over ``--frames`` frames, divided by the calls, in
wall time or (``--clock cpu``) the CPU time of all the process's threads.
Run against another commit's worktree (``PYTHONPATH=<worktree> python benchmarks/bench_validator.py``)
for before/after figures (from this commit on: ``validator_faces`` is new here).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPUAU_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("GPUAU_MODELS", str(SHARED / "models" / "openface-2.2.0"))


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def best_ms(fn, calls: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return 1000 * min(times) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall time, or CPU time of the whole process (all threads; steadier on a loaded machine)")
    args = ap.parse_args()
    global clock
    clock = CLOCKS[args.clock]

    import cv2
    import pandas as pd

    import gpuau
    from gpuau.au.analyzer import AUAnalyzer
    from gpuau.features.align import face_mask, similarity_warp
    from gpuau.cpu.paw import validator_faces
    from gpuau.device import resolve_device
    from gpuau.landmarks.paw import triangle_map, warp, warp_coefficients
    from gpuau.landmarks.validator import DetectionValidator, _view_arrays, cnn_forward, validator_roi

    df = pd.read_csv(SHARED / "reference" / "openface-clnf" / "default.csv", skipinitialspace=True)[: args.frames]
    n = len(df)
    lm = np.stack([df[[f"x_{i}" for i in range(68)]].to_numpy(np.float32),
                   df[[f"y_{i}" for i in range(68)]].to_numpy(np.float32)], axis=2)
    rot = df[["p_rx", "p_ry", "p_rz"]].to_numpy(np.float64)
    glob = df[["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"]].to_numpy(np.float64)
    cap = cv2.VideoCapture(str(SHARED / "media" / "default.wmv"))
    gray = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2GRAY) for _ in range(n)]

    validator = DetectionValidator.load()
    views = [validator.model.views[validator.view_id(r)] for r in rot]
    rois, regions, sources = [], [], []
    for i in range(n):
        (x0, y0, w, h), local = validator_roi(lm[i], gray[i].shape)
        rois.append(np.asarray(gray[i][y0:y0 + h, x0:x0 + w], np.float32))
        regions.append(np.array([[x0, y0, w, h]]))
        sources.append(local)
    cpu = resolve_device("cpu")

    def face_input(i):
        return validator_faces(gray[i][None], [0], regions[i], warp_coefficients(views[i].paw, sources[i][None]),
                               *_view_arrays(views[i], cpu))

    inputs = [face_input(i) for i in range(n)]

    an = AUAnalyzer()
    tris = an.triangulation
    warps = [similarity_warp(lm[i], glob[i], an.pdm.mean_shape) for i in range(n)]
    dest = []
    for i in range(n):
        d = (lm[i].astype(np.float64) @ warps[i][:, :2].T.astype(np.float64)).astype(np.float32) + warps[i][:, 2]
        dest.append(d)

    # a Numba parallel kernel of the tracker (bilinear warps of 68 patch areas), run between CNN calls
    kernels = cpu.kernels
    frames = np.stack(gray[:1])
    mats = np.tile(np.array([[1, 0, 100], [0, 1, 100]], np.float64), (68, 1, 1))

    def parallel_work():
        kernels.warp_affine(frames, np.zeros(68, np.int64), mats, 31, 31)

    def check():
        for i in range(n):
            validator.check(gray[i], lm[i], rot[i])

    def warps_only():
        for i in range(n):
            warp(rois[i], views[i].paw, sources[i])

    def faces():
        for i in range(n):
            face_input(i)

    def cnn():
        for i in range(n):
            cnn_forward(inputs[i], views[i].layers)

    def cnn_interleaved() -> float:
        """ms per cnn_forward call, each called right after the parallel kernel."""
        spent = []
        for _ in range(args.repeat):
            total = 0.0
            for i in range(n):
                parallel_work()
                t = clock()
                cnn_forward(inputs[i], views[i].layers)
                total += clock() - t
            spent.append(total)
        return 1000 * min(spent) / n

    def masks():
        for i in range(n):
            face_mask(lm[i], warps[i], tris)

    def raster():
        for i in range(n):
            triangle_map(dest[i], tris, 0.0, 0.0, 112, 112)

    for fn in (check, cnn_interleaved, masks, raster):  # JIT and caches
        fn()
    rows = {
        "validator check (all)": best_ms(check, n, args.repeat),
        "  validator_faces (PAW warp + normalisation)": best_ms(faces, n, args.repeat),
        "  PAW warp alone (paw.warp)": best_ms(warps_only, n, args.repeat),
        "  cnn_forward": best_ms(cnn, n, args.repeat),
        "  cnn_forward right after a Numba parallel kernel": cnn_interleaved(),
        "AU face_mask (PAW raster 112x112)": best_ms(masks, n, args.repeat),
        "  triangle_map alone": best_ms(raster, n, args.repeat),
    }
    print(f"gpuau {gpuau.__version__} ({Path(gpuau.__file__).parent}), {n} frames of default.wmv, "
          f"best of {args.repeat}, {args.clock} time")
    for name, ms in rows.items():
        print(f"{name:48s} {ms:8.3f} ms/call")


if __name__ == "__main__":
    main()
