"""Hot spots of the pipeline: cProfile of ``Analyzer.write_video`` (top functions by cumulative and by own
time), and optionally line_profiler over the pipeline's stage functions.  Every thread the run starts is
profiled (decoding and the AU stages run on their own threads); the tables sum the threads, so lock
``acquire`` rows are one thread waiting for another.

Usage::

    python -m benchmarks.profile VIDEO [--frames N] [--device cpu] [--top 30] [--out run.prof]
                                       [--line [--line-fn module:Owner.name ...]] [--startup]

By default the models are loaded and compiled before profiling starts, so the profile is the steady
state of one video.  ``--startup`` profiles the start instead: imports, model loading, Numba JIT (or
its cache) and the first frame.  ``--line`` (needs ``pip install line_profiler``) adds per-line times of
the Python functions behind each stage of :data:`benchmarks.run.STAGES` and of any ``--line-fn``;
Numba-compiled functions have no Python lines to time and are listed as skipped.  Run it as a module
(``python -m``): as a script, this file's name would hide the standard library's ``profile``.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import inspect
import io
import os
import pstats
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.run import SHARED, STAGES, first_frames_clip, resolve_target


@contextlib.contextmanager
def profiling_all_threads(line_profiler=None):
    """cProfile (and ``line_profiler``, if given) this thread and every thread started in the block;
    yields the list of the threads' cProfile profiles.

    The pipeline decodes on one thread and runs the AU stages on another, which profilers enabled on
    this thread only would miss.
    """
    profiles = [cProfile.Profile()]

    def start(frame, event, arg):  # first event of a new thread: hand the thread over to its own profilers
        profiles.append(cProfile.Profile())
        profiles[-1].enable()
        if line_profiler is not None:
            line_profiler.enable()

    threading.setprofile(start)
    profiles[0].enable()
    if line_profiler is not None:
        line_profiler.enable()
    try:
        yield profiles
    finally:
        profiles[0].disable()
        if line_profiler is not None:
            line_profiler.disable()
        threading.setprofile(None)


def print_stats(stats: pstats.Stats, top: int) -> None:
    for key, title in (("cumulative", "cumulative time"), ("tottime", "own time (tottime)")):
        out = io.StringIO()
        stats.stream = out
        stats.sort_stats(key).print_stats(top)
        text = out.getvalue()
        print(f"===== top {top} by {title} =====")
        print(text[text.find("   ncalls"):].rstrip() + "\n")


def line_profiler_for(targets: list):
    """A ``LineProfiler`` over the Python functions among ``targets``; None when line_profiler is missing."""
    try:
        from line_profiler import LineProfiler
    except ImportError:
        print("--line: line_profiler is not installed (pip install line_profiler); cProfile only")
        return None
    lp = LineProfiler()
    for target in targets:
        owner, name = resolve_target(target)
        fn = getattr(owner, name)
        if inspect.isfunction(fn):
            lp.add_function(fn)
        else:
            print(f"--line: {target} is not a Python function ({type(fn).__name__}); skipped")
    return lp


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--frames", type=int, default=0, metavar="N", help="only the first N frames (lossless copy)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quality", default="exact", help="landmark quality preset, exact or fast (default: exact)")
    ap.add_argument("--top", type=int, default=30, metavar="K", help="rows of each table (default: 30)")
    ap.add_argument("--out", type=Path, metavar="FILE", help="also save the cProfile stats (for snakeviz, pstats)")
    ap.add_argument("--startup", action="store_true", help="profile imports, model loading, JIT and the first frame")
    ap.add_argument("--line", action="store_true", help="line_profiler over the stage functions (if installed)")
    ap.add_argument("--line-fn", action="append", default=[], metavar="module:Owner.name",
                    help="another function for --line (repeatable)")
    args = ap.parse_args(argv)
    os.environ.setdefault("GPUAU_MODELS", str(SHARED / "models" / "openface-2.2.0"))

    lp = None
    with tempfile.TemporaryDirectory(prefix="gpuau-profile-") as tmp:
        video, frames = first_frames_clip(args.video, args.frames, Path(tmp))
        from gpuau.video import open_source

        image = next(iter(open_source(video))).image
        if args.startup:
            with profiling_all_threads() as profiles:
                from gpuau.pipeline import Analyzer

                Analyzer(args.device, quality=args.quality).analyze_frames([image])
            what = "start-up and first frame"
        else:
            from gpuau.pipeline import Analyzer

            analyzer = Analyzer(args.device, quality=args.quality)
            analyzer.analyze_frames([image])  # models loaded, JIT done
            if args.line:
                lp = line_profiler_for([t for _, targets in STAGES for t in targets] + args.line_fn)
            t0 = time.perf_counter()
            with profiling_all_threads(lp) as profiles:
                analyzer.write_video(video, Path(tmp) / "profile.csv")
            wall = time.perf_counter() - t0
            what = f"{frames} frames, {1000 * wall / frames:.1f} ms/frame under the profiler"
    stats = pstats.Stats(*profiles).strip_dirs()
    print(f"{args.video.name}: {what} (device {args.device}; {len(profiles)} threads profiled, times summed)\n")
    print_stats(stats, args.top)
    if args.out:
        stats.dump_stats(args.out)
        print(f"stats saved to {args.out}")
    if lp is not None:
        lp.print_stats(output_unit=1e-3, stripzeros=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
