"""Corpus throughput on the CPU: one ``gpuau analyze`` of several videos with one process (``--workers 1``)
and with worker processes (``--workers auto``, or ``--workers N``), side by side.

Usage::

    python -m benchmarks.corpus [VIDEO ...] [--copies 2] [--workers N] [--runs 1] [--quality exact] [--json OUT]

The corpus is ``--copies`` copies of each video (default: ``default.wmv`` and ``2015-10-15-15-14.avi``, two
of each: 2260 frames). Each run is a whole ``gpuau analyze`` command, start-up included; the figures are
frames per second over its wall time, the CPU time of the process tree, and the peak resident memory of
the largest process (``ru_maxrss`` of the children). The two settings alternate, so a machine whose speed
drifts moves both; the outputs of the two must be the same bytes, which is checked.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import DEFAULT_VIDEOS, compile_package, count_frames
from gpuau.corpus import SETTINGS_LOG


def analyze(inputs: list, out: Path, workers: str, quality: str) -> dict:
    """One ``gpuau analyze`` command: wall seconds, CPU seconds of its process tree, largest peak RSS (MB)."""
    compile_package()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gpuau", "analyze", *map(str, inputs), "-o", str(out), "--overwrite",
                           "--device", "cpu", "--quality", quality, "--workers", workers, "--quiet"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"gpuau analyze failed:\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": after.ru_maxrss / 1024}


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="*", type=Path, default=list(DEFAULT_VIDEOS))
    ap.add_argument("--copies", type=int, default=2, help="copies of each video in the corpus (default: 2)")
    ap.add_argument("--workers", default="auto", help="the worker processes to compare with one (default: auto)")
    ap.add_argument("--runs", type=int, default=1, help="runs of each setting, alternating (default: 1)")
    ap.add_argument("--quality", default="exact", choices=("exact", "fast"))
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gpuau-corpus-") as tmp:
        tmp = Path(tmp)
        inputs = []
        for video in args.videos:
            for k in range(args.copies):
                inputs.append(tmp / "in" / f"{video.stem}-{k}{video.suffix}")
                inputs[-1].parent.mkdir(exist_ok=True)
                shutil.copyfile(video, inputs[-1])
        frames = sum(count_frames(v) for v in args.videos) * args.copies
        settings = {"1": tmp / "one", args.workers: tmp / "workers"}
        runs = {name: [] for name in settings}
        for _ in range(args.runs):
            for name, out in settings.items():
                runs[name].append(analyze(inputs, out, name, args.quality))
        same = all((settings["1"] / p.name).read_bytes() == p.read_bytes() for p in settings[args.workers].iterdir()
                   if not p.name.startswith(".") and p.name != SETTINGS_LOG)  # the log: lines in finishing order

    cores = len(os.sched_getaffinity(0))
    print(f"corpus: {len(inputs)} videos, {frames} frames, --quality {args.quality}, {cores} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    best = {}
    for name, results in runs.items():
        best[name] = min(results, key=lambda r: r["wall_s"])
        fps = [frames / r["wall_s"] for r in results]
        print(f"  --workers {name:<5} {min(fps):7.1f}-{max(fps):.1f} frames/s, CPU {best[name]['cpu_s']:.1f} s, "
              f"largest process {best[name]['peak_rss_mb']:.0f} MB")
    ratio = best["1"]["wall_s"] / best[args.workers]["wall_s"]
    print(f"  throughput ratio (--workers {args.workers} / --workers 1, best runs): {ratio:.2f}x; "
          f"outputs {'identical' if same else 'DIFFERENT'}")
    if args.json:
        args.json.write_text(json.dumps({"frames": frames, "videos": len(inputs), "cores": cores,
                                         "quality": args.quality, "runs": runs, "ratio": ratio,
                                         "identical": same}, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
