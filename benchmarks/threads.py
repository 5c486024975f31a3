"""CPU time per thread of one in-process run: how the pipeline's work is spread over the cores.

Usage::

    python -m benchmarks.threads [VIDEO] [--quality exact|fast] [--device cpu] [--json OUT.json]

One :meth:`gpuau.pipeline.Analyzer.write_video` run (models loaded and compiled on the first frame
beforehand); a sampler thread reads every thread's CPU time from ``/proc/self/task`` (Linux; 10 ms
ticks) while it runs.  Per frame it prints the CPU milliseconds of the main thread (tracking: CLNF
landmarks, validation, pose), of each named Python thread (``gpuau-au``: AU features; the decoder;
``gpuau-helper``: half of the large CCNF response-map calls and the eye models) and of the threads
Python does not know (onnxruntime's pool, the decoder's own threads), and
the wall time.

CPU time is little affected by other jobs on the machine, unlike wall time, which on a shared
machine depends on how many cores the scheduler gives this process.  From the CPU times the run
also derives ``bound``: ``max(main thread, total / cores) ms/frame``, the wall time per frame this
work would take on an otherwise idle machine with ``cores`` cores if the threads never waited for
each other (a lower bound; ``--cores``, default 2, the project's machine).
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

from benchmarks.run import SHARED

OTHER = "other threads"
"""Threads Python does not know: onnxruntime's pool, the decoder's own."""


def thread_cpu_seconds() -> "dict[int, float]":
    """CPU seconds (user + system) of every live thread of this process, by native thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:  # the thread ended
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


class ThreadSampler:
    """Latest CPU time and name of every thread seen while the block runs (threads that end keep
    their last sample: at most one sampling interval of CPU is missed per ended thread)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.cpu: "dict[int, float]" = {}
        self.names: "dict[int, str]" = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="benchmark-sampler", daemon=True)

    def _sample(self) -> None:
        named = {t.native_id: t.name for t in threading.enumerate()}
        for tid, cpu in thread_cpu_seconds().items():
            self.cpu[tid] = cpu
            if tid in named:
                self.names[tid] = named[tid]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "ThreadSampler":
        self._sample()
        self.start = dict(self.cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def per_thread(self) -> "dict[str, float]":
        """CPU seconds spent in the block, by thread name (``main``, Python thread names, :data:`OTHER`)."""
        out: "dict[str, float]" = {}
        for tid, cpu in self.cpu.items():
            if tid == self._thread.native_id:
                continue
            name = "main" if tid == threading.main_thread().native_id else self.names.get(tid, OTHER)
            out[name] = out.get(name, 0.0) + cpu - self.start.get(tid, 0.0)
        return {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.threads", description=__doc__.split("\n\n")[0])
    ap.add_argument("video", nargs="?", type=Path, default=SHARED / "media" / "default.wmv")
    ap.add_argument("--quality", default="exact")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cores", type=int, default=2, help="cores of the machine the bound is for (default: 2)")
    ap.add_argument("--json", type=Path, metavar="OUT")
    args = ap.parse_args(argv)
    os.environ.setdefault("GPUAU_MODELS", str(SHARED / "models" / "openface-2.2.0"))
    import tempfile

    from gpuau.pipeline import Analyzer
    from gpuau.video import open_source, serial_opencv

    serial_opencv()  # as the gpuau command runs

    analyzer = Analyzer(args.device, quality=args.quality)
    with open_source(args.video) as source:
        analyzer.analyze_frames([next(iter(source)).image])  # models loaded, JIT done
    with tempfile.TemporaryDirectory(prefix="gpuau-threads-") as tmp:
        out = Path(tmp) / "out.csv"
        t0 = time.perf_counter()
        with ThreadSampler() as sampler:
            analyzer.write_video(args.video, out)
        wall = time.perf_counter() - t0
        with open(out) as f:
            frames = sum(1 for _ in f) - 1
    per = {k: 1000 * v / frames for k, v in sampler.per_thread().items()}
    total = sum(per.values())
    bound = max(per.get("main", 0.0), total / args.cores)
    print(f"{args.video.name}, --quality {args.quality}, {frames} frames; load average {os.getloadavg()[0]:.1f}")
    print(f"  wall {1000 * wall / frames:.2f} ms/frame ({frames / wall:.1f} frames/s), CPU {total:.2f} ms/frame "
          f"({total * frames / 1000 / wall:.2f} cores busy)")
    for name, ms in per.items():
        print(f"  {name:>24s}: {ms:6.2f} ms/frame CPU")
    print(f"  bound on {args.cores} idle cores: {bound:.2f} ms/frame ({1000 / bound:.0f} frames/s)")
    if args.json:
        args.json.write_text(json.dumps({"video": str(args.video), "quality": args.quality, "frames": frames,
                                         "wall_ms_per_frame": 1000 * wall / frames, "cpu_ms_per_frame": per,
                                         "bound_ms_per_frame": bound, "cores": args.cores,
                                         "load_average": os.getloadavg()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
