"""Throughput of the lockstep engine (:class:`gpuau.engine.Engine`) for several stream counts ``B``.

For each ``B``, ``B`` clips (the first ``--frames`` frames of the shared videos, decoded into memory
beforehand, cycled) run through one engine together; the table gives wall time, frames/s, process
CPU ms per frame and the engine's counts (steps, batched and lone detections and validations, steps
whose frames were staged to the device during the step before).  ``--quality`` and ``--detect-every``
set the engine's and the reference pipeline's settings.  ``--check`` also
compares every stream with the single-stream CPU pipeline (:meth:`gpuau.pipeline.Analyzer.analyze_frames`):
the largest landmark (px) and AU intensity differences and the AU presence values that disagree.  ``--memory`` measures the host memory of one more
stream (tracemalloc peak of a run with ``B`` streams minus one with 1, over ``B - 1``).

    python benchmarks/bench_engine.py [--device cpu|emulated|cuda] [--streams 1 8 64] [--frames 60]
                                      [--quality exact|fast] [--detect-every N] [--check] [--memory]

On a CPU-only machine the numbers are for correctness and for the emulated backend's cost: the
engine's gain is batching on a GPU (``--device cuda --streams 1 8 64``).  On a shared machine read the
CPU time: wall time depends on the load.  On ``emulated`` the table adds the host's share: wall time
minus the time inside the emulated kernel launches (which run synchronously), per frame, i.e. the
Python, NumPy and host kernels a GPU run would still spend on the CPU per face and frame; over the whole
run, and over the steps that detected nothing (``tracking steps``: a long video's steady state, without
the first frames' MTCNN and multi-hypothesis fits or the end-of-video AU post-processing).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPUAU_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("GPUAU_MODELS", str(SHARED / "models" / "openface-2.2.0"))

from gpuau.engine import Engine, Job  # noqa: E402
from gpuau.pipeline import Analyzer  # noqa: E402
from gpuau.video import array_frames  # noqa: E402

VIDEOS = ("default.wmv", "changeLighting.wmv", "2015-10-15-15-14.avi")


def decode(path: Path, n: int) -> "tuple[list, float]":
    """The first ``n`` BGR frames of ``path`` and its frame rate."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    images = []
    while len(images) < n:
        ok, img = cap.read()
        if not ok:
            break
        images.append(img)
    cap.release()
    return images, fps


def jobs(clips: list, b: int) -> list:
    """``b`` jobs cycling through ``clips`` (in-memory frames, tables kept in memory)."""
    out = []
    for k in range(b):
        images, fps = clips[k % len(clips)]
        frames = list(array_frames(images, fps))
        out.append(Job(frames, None, name=str(k)))
    return out


def run(engine: Engine, clips: list, b: int) -> "tuple[list, float, float]":
    """Outcomes, wall seconds and process CPU seconds of ``b`` streams."""
    todo = jobs(clips, b)
    t, c = time.perf_counter(), time.process_time()
    outcomes = list(engine.run(todo))
    return outcomes, time.perf_counter() - t, time.process_time() - c


class KernelClock:
    """Wall seconds spent inside emulated kernel launches while the block runs (they are synchronous, so
    the rest of the wall time is the host's)."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        from gpuau.kernels import emulator

        self._kernel, launch = emulator.EmulatedKernel, emulator.EmulatedKernel.__call__

        def timed(kernel, *args, **kwargs):
            t = time.perf_counter()
            try:
                return launch(kernel, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t

        self._launch = launch
        emulator.EmulatedKernel.__call__ = timed
        return self

    def __exit__(self, *exc):
        self._kernel.__call__ = self._launch


class TrackingSteps:
    """Host seconds and frames of the engine's steps that detected nothing (every stream tracking): the steady
    state of a long video, without the first frames' MTCNN and multi-hypothesis fits or the end-of-video AU
    post-processing.  Reads ``kernels`` (a running :class:`KernelClock`) around each step."""

    def __init__(self, kernels: KernelClock):
        self.kernels, self.seconds, self.frames = kernels, 0.0, 0

    def __enter__(self):
        clock, original = self, Engine._step

        def timed(engine, items):
            detections = engine.stats["detections_batched"] + engine.stats["detections_alone"]
            t, k = time.perf_counter(), clock.kernels.seconds
            out = list(original(engine, items))
            if engine.stats["detections_batched"] + engine.stats["detections_alone"] == detections:
                clock.seconds += (time.perf_counter() - t) - (clock.kernels.seconds - k)
                clock.frames += len(items)
            yield from out

        self._original = original
        Engine._step = timed
        return self

    def __exit__(self, *exc):
        Engine._step = self._original


def largest_differences(outcomes: list, references: list) -> "tuple[float, float, int]":
    """Largest landmark (px) and AU intensity difference of the outcomes from their single-stream tables,
    and the number of AU presence values that disagree."""
    lm = au = 0.0
    flips = 0
    for o in outcomes:
        ref = references[int(o.input) % len(references)].columns
        for c, want in ref.items():
            diff = np.abs(np.asarray(o.result.columns[c], np.float64) - want)
            if c.startswith(("x_", "y_")):
                lm = max(lm, float(diff.max(initial=0.0)))
            elif c.startswith("AU") and c.endswith("_r"):
                au = max(au, float(diff.max(initial=0.0)))
            elif c.startswith("AU"):
                flips += int(np.count_nonzero(diff))
    return lm, au, flips


def stream_memory(analyzer: Analyzer, clips: list, b: int) -> float:
    """Host MB of one more stream: tracemalloc peak with ``b`` streams minus with 1, over ``b - 1``."""
    peaks = []
    for n in (1, b):
        engine = Engine.from_analyzer(analyzer, streams=n)
        tracemalloc.start()
        list(engine.run(jobs(clips, n)))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return (peaks[1] - peaks[0]) / max(b - 1, 1) / 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--frames", type=int, default=60, help="frames per clip")
    ap.add_argument("--quality", default="exact", choices=("exact", "fast"))
    ap.add_argument("--detect-every", type=int, default=None, metavar="N")
    ap.add_argument("--check", action="store_true", help="compare with the single-stream CPU pipeline")
    ap.add_argument("--memory", action="store_true", help="host memory per stream (tracemalloc)")
    args = ap.parse_args(argv)

    clips = [decode(SHARED / "media" / v, args.frames) for v in VIDEOS]
    references = None
    settings = dict(quality=args.quality, detect_every=args.detect_every)
    if args.check:
        an = Analyzer("cpu", **settings)
        references = [an.analyze_frames(images, fps=fps) for images, fps in clips]
    analyzer = Analyzer(args.device, **settings)
    engine = Engine.from_analyzer(analyzer, streams=max(args.streams))
    run(engine, clips, 1)  # models loaded, kernels compiled
    print(f"device {engine.backend.name}, {args.frames} frames per stream, quality {args.quality}, "
          f"detect_every {args.detect_every}")
    emulated = engine.backend.name == "emulated"
    print(f"{'B':>4} {'frames':>7} {'wall s':>8} {'frames/s':>9} {'CPU ms/frame':>13} {'steps':>6} "
          f"{'det. batched':>13} {'det. alone':>11} {'val. batched':>13} {'val. alone':>11} {'staged ahead':>13}"
          + (f" {'host ms/frame':>14} {'tracking steps':>15}" if emulated else "")
          + (f" {'max |d lm| px':>14} {'max |d AU_r|':>13} {'AU_c flips':>11}" if args.check else ""))
    for b in args.streams:
        engine.streams = b
        engine.stats = dict.fromkeys(engine.stats, 0)
        with KernelClock() as kernels, TrackingSteps(kernels) as tracking:
            outcomes, wall, cpu = run(engine, clips, b)
        bad = [o for o in outcomes if o.status != "done"]
        if bad:
            print(f"failed: {[(o.input, o.reason) for o in bad]}", file=sys.stderr)
            return 1
        frames = sum(o.frames for o in outcomes)
        s = engine.stats
        line = (f"{b:>4} {frames:>7} {wall:>8.2f} {frames / wall:>9.1f} {1000 * cpu / frames:>13.2f} {s['steps']:>6} "
                f"{s['detections_batched']:>13} {s['detections_alone']:>11} {s['validations_batched']:>13} "
                f"{s['validations_alone']:>11} {s['steps_staged_ahead']:>13}")
        if emulated:
            line += f" {1000 * (wall - kernels.seconds) / frames:>14.2f} {1000 * tracking.seconds / max(tracking.frames, 1):>15.2f}"
        if references is not None:
            lm, au, flips = largest_differences(outcomes, references)
            line += f" {lm:>14.2e} {au:>13.2e} {flips:>11}"
        print(line)
    if args.memory:
        b = max(args.streams)
        print(f"peak host memory per stream: {stream_memory(analyzer, clips, b):.1f} MB (tracemalloc, B={b}, "
              f"streams starting together: 11 hypothesis fits each in the first step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
