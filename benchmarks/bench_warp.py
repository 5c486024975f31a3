"""Batched warp_affine vs a cv2.warpAffine loop: 68 landmark areas of interest x 32 frames.

    python benchmarks/bench_warp.py [--frames 32] [--size 35] [--repeat 5] [--device cpu|emulated|cuda]

Prints the best-of-``repeat`` milliseconds per batch.  (cv2 >= 4.11 computes warps with float
coordinates, so its output differs from OpenFace's; the timing comparison still holds.)
"""
import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from gpuau.device import resolve_device

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media" / "default.wmv"
FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP


def best_ms(fn, repeat, sync=lambda: None):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return 1e3 * min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=35, help="area of interest side (window 25 + patch 11 - 1)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--video", default=str(MEDIA))
    args = ap.parse_args()

    cap = cv2.VideoCapture(args.video)
    frames = []
    while len(frames) < args.frames:
        ok, frame = cap.read()
        assert ok, "video too short"
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    images = np.stack(frames).astype(np.float32)
    rng = np.random.default_rng(0)
    n = 68 * len(images)
    s, th = rng.uniform(0.8, 1.2, n), rng.uniform(-0.3, 0.3, n)
    a, b = s * np.cos(th), s * np.sin(th)
    tx, ty = rng.uniform(250, 390, n), rng.uniform(150, 330, n)
    matrices = np.stack([np.stack([a, -b, tx], -1), np.stack([b, a, ty], -1)], 1).astype(np.float32)
    index = np.repeat(np.arange(len(images), dtype=np.int32), 68)
    size = args.size

    def cv2_loop():
        for k in range(n):
            cv2.warpAffine(images[index[k]], matrices[k], (size, size), flags=FLAGS)

    backend = resolve_device(args.device)
    dev_images, dev_index, dev_matrices = (backend.asarray(x) for x in (images, index, matrices))
    sync = (lambda: backend.xp.cuda.Device().synchronize()) if backend.name == "cuda" else (lambda: None)

    def batched():
        backend.kernels.warp_affine(dev_images, dev_index, dev_matrices, size, size)

    batched()  # compile
    sync()
    print(f"{n} warps of {size}x{size} float32 from {len(images)} frames of 640x480")
    print(f"cv2.warpAffine loop ({cv2.__version__}): {best_ms(cv2_loop, args.repeat):8.2f} ms")
    print(f"gpuau warp_affine ({backend.name}):     {best_ms(batched, args.repeat, sync):8.2f} ms")


if __name__ == "__main__":
    main()
