"""Landmark tracking over whole videos: accuracy against OpenFace's CSV and time per frame.

Usage::

    python benchmarks/bench_landmarks.py VIDEO [--reference REF.csv] [--out OUT.csv] [--frames N] [--device cpu]

Runs :class:`gpuau.landmarks.tracker.FaceTracker` (MTCNN detection, CLNF tracking, validator) and
writes ``frame, face_id, timestamp, confidence, success, x_0..x_67, y_0..y_67, p_scale..p_ty,
p_0..p_33`` (OpenFace's formats), which ``compare_openface.py REF.csv OUT.csv`` compares.  With
``--reference`` it prints the landmark error (px) over frames both report as successful.  It prints the
wall-clock and CPU times per frame (CPU time is the robust figure on a shared machine), over all
frames and separately for tracked frames and detection frames (MTCNN + the 11 rotation hypotheses).

On a shared 2-core machine run it with ``NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``: the
parallel loops gain little on 2 cores and their idle threads spin when the cores are busy.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("video")
    ap.add_argument("--reference")
    ap.add_argument("--out")
    ap.add_argument("--frames", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="where the CLNF fits run (cpu, emulated, cuda)")
    args = ap.parse_args()

    from gpuau.detect import MTCNN
    from gpuau.landmarks.tracker import FaceTracker
    from gpuau.video import open_source

    mtcnn = MTCNN()
    detections = []

    def detect(image):
        detections.append(True)
        return mtcnn.detect_box(image)

    tracker = FaceTracker(detect=detect, device=args.device)
    rows, times, cpu, detected = [], [], [], []
    for frame in open_source(args.video):
        if args.frames and frame.index >= args.frames:
            break
        t0, c0 = time.perf_counter(), time.process_time()
        n_detections = len(detections)
        r = tracker.track(frame.image, frame.gray)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        detected.append(len(detections) > n_detections)
        rows.append((frame.index + 1, frame.timestamp, r))

    if args.out:
        head = ["frame", "face_id", "timestamp", "confidence", "success"]
        head += [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
        head += ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{i}" for i in range(34)]
        with open(args.out, "w") as f:
            f.write(", ".join(head) + "\n")
            for idx, ts, r in rows:
                vals = [str(idx), "0", f"{ts:.3f}", f"{r.confidence:.2f}", str(int(r.success))]
                vals += [f"{v:.1f}" for v in r.landmarks[:, 0]] + [f"{v:.1f}" for v in r.landmarks[:, 1]]
                vals += [f"{v:.3f}" for v in r.params_global] + [f"{v:.3f}" for v in r.params_local]
                f.write(", ".join(vals) + "\n")

    times = np.array(times) * 1000
    cpu = np.array(cpu) * 1000
    detected = np.array(detected)
    print(f"{len(rows)} frames: wall median {np.median(times):.1f} ms/frame, mean {times.mean():.1f} ms, "
          f"max {times.max():.1f} ms (first frame, with detection: {times[0]:.1f} ms); "
          f"CPU median {np.median(cpu):.1f} ms/frame, mean {cpu.mean():.1f} ms")
    for name, sel in (("tracked", ~detected), ("detection", detected)):
        if sel[1:].any():  # the first frame also compiles and loads: left out
            c, w = cpu[1:][sel[1:]], times[1:][sel[1:]]
            print(f"  {sel[1:].sum()} {name} frames (after the first): CPU median {np.median(c):.2f} ms, "
                  f"mean {c.mean():.2f} ms; wall median {np.median(w):.2f} ms")
    if args.reference:
        import pandas as pd

        df = pd.read_csv(args.reference, skipinitialspace=True)
        ref = {int(r.frame): r for r in df.itertuples()}
        errs, succ_agree, n = [], 0, 0
        for idx, _, r in rows:
            if idx not in ref:
                continue
            rr = ref[idx]
            n += 1
            succ_agree += int(bool(rr.success) == r.success)
            if rr.success and r.success:
                lm = np.array([[getattr(rr, f"x_{i}"), getattr(rr, f"y_{i}")] for i in range(68)])
                errs.append(np.linalg.norm(r.landmarks - lm, axis=1).mean())
        errs = np.array(errs)
        print(f"success agreement {succ_agree}/{n}; landmark error over {len(errs)} frames: "
              f"mean {errs.mean():.3f} px, median {np.median(errs):.3f}, p95 {np.percentile(errs, 95):.3f}, "
              f"max {errs.max():.3f}")


if __name__ == "__main__":
    main()
