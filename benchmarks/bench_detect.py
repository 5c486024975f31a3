"""MTCNN detection speed, ms per frame: 640x480 and 1280x720 (a default.wmv frame upscaled),
one frame per call vs batches of 32, on the CPU execution provider (or --device cuda).

    python benchmarks/bench_detect.py [--device cpu] [--repeat 3] [--batch 32]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPUAU_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("GPUAU_MODELS", str(SHARED / "models" / "openface-2.2.0"))


def read_frames(path: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    return frames


def best_ms_per_frame(fn, n_frames: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * min(times) / n_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()

    from gpuau.detect import MTCNN
    from gpuau.cpu.threads import cores

    detector = MTCNN(device=args.device)
    base = read_frames(SHARED / "media" / "default.wmv", args.batch)
    print(f"device={args.device} cores={cores()} batch={args.batch} repeat={args.repeat} (best of)")
    for w, h in ((640, 480), (1280, 720)):
        frames = [f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in base]
        detector.detect_batch(frames[:2])  # warm-up
        single = best_ms_per_frame(lambda: [detector.detect(f) for f in frames], len(frames), args.repeat)
        batched = best_ms_per_frame(lambda: detector.detect_batch(frames), len(frames), args.repeat)
        faces = sum(len(d) for d in detector.detect_batch(frames))
        print(f"{w}x{h}: single {single:7.2f} ms/frame   batch of {len(frames)} {batched:7.2f} ms/frame   ({faces} faces)")


if __name__ == "__main__":
    main()
