"""PNet's pyramid mosaic on the CPU: a cv2.resize loop (what gpuau ran before the kernel) vs the Numba
twin of ``pyramid.cu`` (what the cpu backend runs), and the kernel on a GPU backend.

    python -m benchmarks.bench_pnet_pyramid [--frames 1 4 16] [--repeat 20] [--device cpu|emulated|cuda]

Prints the best-of-``repeat`` milliseconds per batch of frames (640x480 default.wmv frames, and the
same upscaled to 1920x1080).  On ``--device cuda`` the GPU figure includes a synchronisation.
"""
import argparse

import cv2
import numpy as np

from benchmarks.bench_warp import MEDIA, best_ms
from gpuau.cpu.pnet_pyramid import pnet_pyramid as pnet_pyramid_twin
from gpuau.detect.mtcnn import pack_levels, pyramid_levels
from gpuau.device import resolve_device


def pnet_pyramid_cv2(frames, sizes, offsets, canvas_h, canvas_w):
    """The mosaic by cv2.resize of the float frame per level, normalised, RGB planes."""
    mosaic = np.zeros((len(frames), canvas_h, canvas_w, 3), np.float32)
    for frame, out in zip(frames, mosaic):
        frame = frame.astype(np.float32)
        for (h, w), (y, x) in zip(sizes, offsets):
            out[y:y + h, x:x + w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
    mosaic = (mosaic - np.float32(127.5)) * np.float32(0.0078125)
    return np.ascontiguousarray(mosaic[..., ::-1].transpose(0, 3, 1, 2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--device", default=None, help="also time backend.kernels.pnet_pyramid on this device")
    ap.add_argument("--video", default=str(MEDIA))
    args = ap.parse_args()

    cap = cv2.VideoCapture(args.video)
    video = []
    while len(video) < max(args.frames):
        ok, frame = cap.read()
        assert ok, "video too short"
        video.append(frame)
    backend = resolve_device(args.device) if args.device else None
    sync = (lambda: backend.xp.cuda.Device().synchronize()) if backend is not None and backend.is_gpu else (lambda: None)
    print(f"{'frame':>10} {'batch':>5} {'cv2 loop ms':>12} {'Numba twin ms':>14} {'twin/cv2':>9}"
          + (f" {args.device + ' ms':>12}" if backend else ""))
    for height, width in ((480, 640), (1080, 1920)):
        frames = np.stack([cv2.resize(f, (width, height)) if f.shape[:2] != (height, width) else f for f in video])
        sizes = [(h, w) for _, h, w in pyramid_levels(height, width)]
        offsets, (ch, cw) = pack_levels(sizes)
        for b in args.frames:
            batch = frames[:b]
            pnet_pyramid_twin(batch, sizes, offsets, ch, cw)  # JIT
            t_cv2 = best_ms(lambda: pnet_pyramid_cv2(batch, sizes, offsets, ch, cw), args.repeat)
            t_twin = best_ms(lambda: pnet_pyramid_twin(batch, sizes, offsets, ch, cw), args.repeat)
            row = f"{width}x{height:<4} {b:>5} {t_cv2:12.2f} {t_twin:14.2f} {t_twin / t_cv2:9.2f}"
            if backend is not None:
                on_device = backend.asarray(batch)
                backend.kernels.pnet_pyramid(on_device, sizes, offsets, ch, cw)
                t_dev = best_ms(lambda: backend.kernels.pnet_pyramid(on_device, sizes, offsets, ch, cw), args.repeat, sync)
                row += f" {t_dev:12.2f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
