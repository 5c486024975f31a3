"""CPU speed of the whole pipeline: per-stage ms/frame, end-to-end frames/s, start-up and peak memory.

Usage::

    python -m benchmarks.run [VIDEOS...] [--frames N] [--json OUT.json] [--device cpu] [--quality exact|fast]
                             [--no-cold]

For each video (default: ``../shared/media/default.wmv`` and ``2015-10-15-15-14.avi``):

* **stages**: one in-process :meth:`gpuau.pipeline.Analyzer.write_video` run (models loaded and JIT
  compiled beforehand) with the pipeline's own functions wrapped, from outside the package, by a timer
  that records exclusive wall time, thread CPU time and calls per stage (:data:`STAGES`); ``other`` is
  what no stage covers (the frame loop, rows, queue waits), negative when the AU stages, on their own
  thread, overlap the tracking.  ``decode`` is timed in a separate pass over the same frames, since in
  the pipeline it runs in the prefetch thread, overlapped with the compute.
* **end to end**: ``python -m gpuau analyze VIDEO -o DIR --device D`` in a fresh process (decode to
  CSV, start-up included); frames/s with start-up, and without it (minus the warm start-up below);
  CPU time and peak memory (``ru_maxrss``) of that process, read by a small launcher process.
* **start-up** (once per run): a fresh process imports gpuau, loads the models and analyses the first
  frame twice; start-up = interpreter + imports + (first frame - second frame), i.e. model loading and
  Numba JIT.  *cold*: empty Numba and parsed-model caches, the kernels compiled by the warm-up's child
  processes (:mod:`gpuau.warmup`); *cold, in process*: the same with ``GPUAU_WARMUP=0`` (the analysing
  process compiles them); *warm*: the first caches, now filled.  Peak memory of the process and, apart,
  of the largest child process it waited for.

``--frames N`` runs the stages and the end-to-end process on a lossless (FFV1) copy of the first N
frames, at the video's frame rate.  Nothing in ``gpuau/`` is changed or needs timing code.
"""
from __future__ import annotations

import argparse
import compileall
import contextlib
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPUAU_SHARED", ROOT.parent / "shared"))
DEFAULT_VIDEOS = (SHARED / "media" / "default.wmv", SHARED / "media" / "2015-10-15-15-14.avi")

STAGES = (
    # (stage, functions the pipeline calls for it, as "module:attribute"), in pipeline order
    ("decode", ()),
    ("detect", ("gpuau.detect.mtcnn:MTCNN.detect",)),
    ("landmarks", ("gpuau.landmarks.tracker:detect_landmarks_batch",)),
    ("validate", ("gpuau.landmarks.validator:DetectionValidator.check",)),
    ("pose", ("gpuau.landmarks.tracker:camera_space_outputs",)),
    ("align", ("gpuau.au.analyzer:align_faces",)),
    ("HOG", ("gpuau.au.analyzer:fhog_descriptors",)),
    ("geometry", ("gpuau.au.analyzer:geometry_descriptor",)),
    ("AU predict", ("gpuau.au.analyzer:AUAnalyzer.add_features",)),
    ("post-process", ("gpuau.au.analyzer:AUAnalyzer.finish",)),
    ("write", ("gpuau.io.openface_csv:OpenFaceCSVWriter.write_rows", "gpuau.io.openface_csv:OpenFaceCSVWriter.close")),
)
"""Stages of ``Analyzer.write_video`` and the functions timed for each (``decode`` is timed on its own)."""

OPENFACE_BASELINE = {
    "what": "OpenFace 2.x C++ FeatureExtraction, CLNF model, 2-core machine of this kind (project issue)",
    "640x480 default.wmv": {"fps_with_startup": 50, "fps_without_startup": 59, "startup_s": 1.5},
    "640x360": {"fps_with_startup": 66},
    "1280x720": {"fps_with_startup": 43},
    "peak_rss_mb": [450, 490],
}


def resolve_target(target: str) -> tuple:
    """``(owner, name)`` of ``"module:Owner.name"``: the module or class whose attribute ``name`` the pipeline looks up."""
    module, _, attr = target.partition(":")
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


class StageTimer:
    """Exclusive wall and CPU time, and call count, per stage of functions wrapped from outside the package.

    A timed function that calls another timed function (on the same thread) is charged only its own
    time.  The pipeline runs the AU stages (align, HOG, geometry, AU predict) on a second thread,
    overlapped with the tracking of the next frame, so the stages' wall times can add up to more than
    the run's (``other`` then goes negative: that is the overlap).  A stage's CPU time is its own
    thread's (``time.thread_time``; the worker threads of onnxruntime and of Numba's parallel loops are
    not counted), so ``other``'s CPU is the rest of the process: the decode thread, the frame loop, the
    worker threads.
    """

    def __init__(self):
        self.seconds = {stage: 0.0 for stage, _ in STAGES}
        self.cpu_seconds = {stage: 0.0 for stage, _ in STAGES}
        self.calls = {stage: 0 for stage, _ in STAGES}
        self._local = threading.local()  # .nested per thread: per active timed call, [wall, cpu] spent in timed calls it made
        self._patched: list = []
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Zero the times and counts (the wrappers stay)."""
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.cpu_seconds = dict.fromkeys(self.cpu_seconds, 0.0)
        self.calls = dict.fromkeys(self.calls, 0)

    def _timed(self, fn, stage: str):
        def timed(*args, **kwargs):
            nested = self._local.__dict__.setdefault("nested", [])
            nested.append([0.0, 0.0])
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                dt, dc = time.perf_counter() - t0, time.thread_time() - c0
                nested_wall, nested_cpu = nested.pop()
                with self._lock:
                    self.seconds[stage] += dt - nested_wall
                    self.cpu_seconds[stage] += dc - nested_cpu
                    self.calls[stage] += 1
                if nested:
                    nested[-1][0] += dt
                    nested[-1][1] += dc

        timed.__wrapped__ = fn
        return timed

    def wrap(self, target: str, stage: str) -> None:
        """Replace ``module:Owner.name`` (a function or method) by a timed call to it."""
        owner, name = resolve_target(target)
        fn = getattr(owner, name, None)
        if not callable(fn):
            raise RuntimeError(f"{target} is not a function any more: update benchmarks.run.STAGES to the pipeline")
        setattr(owner, name, self._timed(fn, stage))
        self._patched.append((owner, name, fn))

    @contextlib.contextmanager
    def installed(self):
        """Wrap every function of :data:`STAGES` for the duration of the block."""
        try:
            for stage, targets in STAGES:
                for target in targets:
                    self.wrap(target, stage)
            yield self
        finally:
            for owner, name, fn in reversed(self._patched):
                setattr(owner, name, fn)
            self._patched.clear()


def first_frames_clip(video: Path, n: int, folder: Path) -> "tuple[Path, int]":
    """Lossless (FFV1) copy of the first ``n`` frames of ``video`` at its frame rate, and its frame count.

    Returns ``video`` itself when it has no more than ``n`` frames.
    """
    import cv2

    from gpuau.video import open_source

    source = open_source(video)
    if n <= 0 or (source.kind == "video" and 0 < source.frame_count <= n):
        return video, count_frames(video)
    out = folder / f"{video.stem}.first{n}.avi"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"FFV1"), source.fps or 30.0, (source.width, source.height))
    if not writer.isOpened():
        raise RuntimeError("this OpenCV build cannot write FFV1; run without --frames")
    written = 0
    for frame in source:
        if written == n:
            break
        writer.write(frame.image)
        written += 1
    writer.release()
    return out, written


def count_frames(video: Path) -> int:
    """Frames that gpuau decodes from ``video``."""
    from gpuau.video import open_source

    return sum(1 for _ in open_source(video))


def decode_times(video: Path, n: int) -> dict:
    """Decoding alone (BGR and grey frames, through the prefetch thread), over the first ``n`` frames."""
    from gpuau.video import open_source

    frames = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in open_source(video):
        frames += 1
        if frames == n:
            break
    return _per_frame(time.perf_counter() - t0, time.process_time() - c0, frames, max(frames, 1))


def stage_times(video: Path, device: str, quality: str, workdir: Path) -> dict:
    """Per-stage exclusive time of one warm, in-process ``Analyzer.write_video`` run over ``video``."""
    from gpuau.pipeline import Analyzer
    from gpuau.video import open_source, serial_opencv

    serial_opencv()  # as the gpuau command runs
    timer = StageTimer()
    with timer.installed():  # before the models load: some are bound once, at load
        analyzer = Analyzer(device, quality=quality)
        first = next(iter(open_source(video))).image
        analyzer.analyze_frames([first])  # loads the models and compiles everything a frame needs
        timer.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        info = analyzer.write_video(video, workdir / f"{video.stem}.stages.csv")
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = info["frames"]
    stages = {stage: _per_frame(timer.seconds[stage], timer.cpu_seconds[stage], timer.calls[stage], n)
              for stage, _ in STAGES if stage != "decode"}
    stages["other"] = _per_frame(total - sum(timer.seconds.values()), cpu - sum(timer.cpu_seconds.values()), n, n)
    return {"frames": n, "faces": info["faces"], "seconds": total, "cpu_seconds": cpu, "ms_per_frame": 1000 * total / n,
            "cpu_ms_per_frame": 1000 * cpu / n, "frames_per_s": n / total, "stages": stages}


def _per_frame(wall: float, cpu: float, calls: int, frames: int) -> dict:
    return {"ms_per_frame": 1000 * wall / frames, "cpu_ms_per_frame": 1000 * cpu / frames, "calls": calls,
            "ms_per_call": 1000 * wall / max(calls, 1)}


def compile_package() -> None:
    """Byte-compile gpuau's modules (where not up to date), as an installed package has them.

    pip compiles a wheel's modules when it installs them, and an editable install writes them at its first import,
    except where ``PYTHONDONTWRITEBYTECODE`` is set (some CI images and containers, this project's machine): there
    every process compiled gpuau's ~16,000 lines again, 0.15-0.25 s of each start-up on 2 cores (2026-12-06), which
    no measured process should pay."""
    compileall.compile_dir(ROOT / "gpuau", quiet=1)


def _child_env(cache: "Path | None", **extra: str) -> dict:
    """Environment of a measured process (gpuau's bytecode compiled first: :func:`compile_package`); ``cache`` holds
    its Numba and parsed-model caches (None: the usual ones)."""
    compile_package()
    env = dict(os.environ, **extra)
    if cache is not None:
        env.update(NUMBA_CACHE_DIR=str(cache / "numba"), GPUAU_CACHE=str(cache / "models"))
    env.setdefault("GPUAU_MODELS", str(SHARED / "models" / "openface-2.2.0"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


# Linux starts a child's ru_maxrss at its parent's resident size (exec keeps the pre-exec peak), so each
# measured process is spawned by this small launcher, which reports the child's rusage to a file.
_LAUNCHER = """import json, os, sys, time
t = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"wall_s": time.perf_counter() - t, "returncode": os.waitstatus_to_exitcode(status),
               "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}, f)
"""


def run_child(cmd: list, env: dict, workdir: Path) -> dict:
    """Run ``cmd`` (``cmd[0]`` an executable path) to completion: wall and CPU time, peak resident memory (MB), stdout."""
    result = workdir / "child.json"
    with tempfile.TemporaryFile(dir=workdir) as out, tempfile.TemporaryFile(dir=workdir) as err:
        subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(result), *map(str, cmd)], env=env, stdout=out,
                       stderr=err, check=True)
        r = json.loads(result.read_text())
        out.seek(0)
        err.seek(0)
        if r["returncode"] != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} exited with {r['returncode']}:\n"
                               f"{err.read().decode(errors='replace')[-3000:]}")
        r["stdout"] = out.read().decode()
    return r


def startup(video: Path, device: str, quality: str, cache: "Path | None", workdir: Path, **env: str) -> dict:
    """Start-up of a fresh process with the Numba / parsed-model caches in ``cache`` (see the module docstring).

    Peak memory: ``peak_rss_mb`` the process's own, ``children_peak_rss_mb`` the largest of the child
    processes it waited for (a cold start's kernel warm-up, :mod:`gpuau.warmup`).  ``env``: extra
    environment variables.
    """
    cmd = [sys.executable, "-m", "benchmarks.run", "--startup-child", str(video), "--device", device,
           "--quality", quality,
           "--spawned-at", repr(time.time())]
    r = run_child(cmd, _child_env(cache, **env), workdir)
    return json.loads(r["stdout"].strip().splitlines()[-1])


def _startup_child(video: Path, device: str, quality: str, spawned_at: float) -> None:
    entered = time.time()
    t0 = time.perf_counter()
    import cv2  # noqa: F401  (decoding is part of every start)

    from gpuau.pipeline import Analyzer
    from gpuau.video import open_source

    t1 = time.perf_counter()
    image = next(iter(open_source(video))).image
    analyzer = Analyzer(device, quality=quality)
    t2 = time.perf_counter()
    analyzer.analyze_frames([image])
    t3 = time.perf_counter()
    analyzer.analyze_frames([image])
    t4 = time.perf_counter()
    import resource

    res = {"interpreter_s": entered - spawned_at, "import_s": t1 - t0, "first_frame_s": t3 - t2,
           "next_frame_s": t4 - t3, "models_jit_s": (t3 - t2) - (t4 - t3),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    res["total_s"] = res["interpreter_s"] + res["import_s"] + res["models_jit_s"]
    print(json.dumps(res))


def end_to_end(video: Path, frames: int, device: str, quality: str, cache: "Path | None", workdir: Path) -> dict:
    """``gpuau analyze`` on ``video`` in a fresh process: wall time, frames/s and peak memory."""
    out = workdir / "e2e"
    cmd = [sys.executable, "-m", "gpuau", "analyze", str(video), "-o", str(out), "--device", device,
           "--quality", quality, "--overwrite", "-q"]
    r = run_child(cmd, _child_env(cache), workdir)
    with open(next(out.glob(f"{video.stem}*.csv"))) as f:
        rows = sum(1 for _ in f) - 1
    if rows != frames:
        raise RuntimeError(f"gpuau analyze wrote {rows} rows for {frames} frames of {video}")
    return {"command": ["python"] + cmd[1:], "wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "frames": frames,
            "fps_with_startup": frames / r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}


def _git(*args) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout


def source_state() -> dict:
    """Commit, files changed in the working tree, and a fingerprint of the package's code as it is on disk."""
    import hashlib

    commit = _git("rev-parse", "HEAD").strip()
    code = hashlib.sha1((commit + _git("diff", "HEAD", "--", "gpuau")).encode())
    for name in _git("ls-files", "--others", "--exclude-standard", "gpuau").splitlines():
        code.update(name.encode() + (ROOT / name).read_bytes())
    return {"commit": commit,
            "modified_files": [line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()],
            "code_fingerprint": code.hexdigest()}


def environment() -> dict:
    """Machine, date, git commit and package versions of this run."""
    from importlib import metadata

    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor())
    versions = {"python": platform.python_version()}
    for dist in ("gpuau", "numpy", "numba", "llvmlite", "opencv-python-headless", "opencv-python", "onnxruntime",
                 "onnxruntime-gpu", "cupy-cuda12x"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)

    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
                    "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                    "platform": platform.platform()},
        "git": source_state(),
        "versions": versions,
    }


def print_startup(res: dict) -> None:
    print("start-up (interpreter + imports + model loading + JIT; not the first frame's own work)")
    for kind, label in (("cold_in_process", "cold, compiled in process (GPUAU_WARMUP=0)"),
                        ("cold", "cold, compiled by child processes"), ("warm", "warm")):
        s = res.get(kind)
        if s is None:
            print(f"  {label}: not measured (--no-cold)")
            continue
        children = f", children {s['children_peak_rss_mb']:.0f} MB" if s["children_peak_rss_mb"] else ""
        print(f"  {label}: {s['total_s']:.1f} s (interpreter {s['interpreter_s']:.2f}, imports {s['import_s']:.2f}, "
              f"models + JIT {s['models_jit_s']:.1f}; one frame with detection {s['next_frame_s']:.2f} s); "
              f"peak memory {s['peak_rss_mb']:.0f} MB{children}")
    print(f"  OpenFace C++: {OPENFACE_BASELINE['640x480 default.wmv']['startup_s']} s")


def print_video(v: dict) -> None:
    run, e2e = v["in_process"], v["end_to_end"]
    print(f"\n{Path(v['video']).name}: {v['width']}x{v['height']}, {v['frames']} frames at {v['fps']:g} fps"
          f"{' (' + v['input'] + ')' if v['input'] != v['video'] else ''}, device {v['device']}, "
          f"--quality {v['quality']}; "
          f"load average {v['load_average'][0]:.1f} -> {v['load_average'][1]:.1f} on {os.cpu_count()} cores")
    print(f"  {'stage':<14}{'ms/frame':>10}{'cpu ms/fr':>11}{'calls':>7}{'ms/call':>10}{'share':>12}")
    for stage, t in run["stages"].items():
        share = "overlapped" if stage == "decode" else f"{100 * t['ms_per_frame'] / run['ms_per_frame']:.0f}%"
        print(f"  {stage:<14}{t['ms_per_frame']:>10.2f}{t['cpu_ms_per_frame']:>11.2f}{t['calls']:>7}"
              f"{t['ms_per_call']:>10.2f}{share:>12}")
    print(f"  {'total':<14}{run['ms_per_frame']:>10.2f}{run['cpu_ms_per_frame']:>11.2f}   in process, warm: "
          f"{run['frames_per_s']:.1f} frames/s")
    print(f"  end to end (gpuau analyze, fresh process): {e2e['wall_s']:.1f} s ({e2e['cpu_s']:.1f} s CPU), "
          f"{e2e['fps_with_startup']:.1f} frames/s with start-up, {e2e['fps_without_startup']:.1f} without; "
          f"peak memory {e2e['peak_rss_mb']:.0f} MB")
    base = OPENFACE_BASELINE
    print(f"  OpenFace C++ (2 cores): 640x480 {base['640x480 default.wmv']['fps_with_startup']} frames/s with start-up, "
          f"{base['640x480 default.wmv']['fps_without_startup']} without; 640x360 {base['640x360']['fps_with_startup']}, "
          f"1280x720 {base['1280x720']['fps_with_startup']}; peak {base['peak_rss_mb'][0]}-{base['peak_rss_mb'][1]} MB")


def bench_video(video: Path, frames: int, device: str, quality: str, cache: "Path | None", warm_startup_s: float,
                workdir: Path) -> dict:
    """All figures of one video (see the module docstring)."""
    from gpuau.video import open_source

    source = open_source(video)
    load_before = os.getloadavg()[0]
    clip, n = first_frames_clip(video, frames, workdir)
    e2e = end_to_end(clip, n, device, quality, cache, workdir)
    e2e["fps_without_startup"] = n / max(e2e["wall_s"] - warm_startup_s, 1e-9)
    run = stage_times(clip, device, quality, workdir)
    run["stages"] = {"decode": decode_times(video, n), **run["stages"]}
    return {"video": str(video), "input": str(clip) if clip == video else f"first {n} frames, FFV1 copy",
            "width": source.width, "height": source.height, "fps": source.fps, "frames": n, "device": device,
            "quality": quality,
            "load_average": [load_before, os.getloadavg()[0]], "in_process": run, "end_to_end": e2e}


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="*", type=Path, help="videos (default: default.wmv and 2015-10-15-15-14.avi)")
    ap.add_argument("--frames", type=int, default=0, metavar="N", help="only the first N frames of each video")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write every figure to this JSON file")
    ap.add_argument("--device", default="cpu", help="gpuau device string (default: cpu)")
    ap.add_argument("--quality", default="exact", help="landmark quality preset, exact or fast (default: exact)")
    ap.add_argument("--no-cold", action="store_true",
                    help="skip the cold start-ups (two full JIT compiles, about a minute each)")
    ap.add_argument("--startup-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--spawned-at", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.startup_child:
        _startup_child(args.startup_child, args.device, args.quality, args.spawned_at)
        return 0
    os.environ.setdefault("GPUAU_MODELS", str(SHARED / "models" / "openface-2.2.0"))
    videos = args.videos or list(DEFAULT_VIDEOS)
    report = {**environment(), "device": args.device, "quality": args.quality,
              "frames_limit": args.frames or None,
              "openface_baseline": OPENFACE_BASELINE, "videos": []}
    with tempfile.TemporaryDirectory(prefix="gpuau-bench-") as tmp:
        tmp = Path(tmp)
        # cold and warm start in private caches; without the cold run, the usual caches after one priming start
        cache = None if args.no_cold else tmp / "cache"
        cold = None if args.no_cold else startup(videos[0], args.device, args.quality, cache, tmp)
        if args.no_cold:
            startup(videos[0], args.device, args.quality, cache, tmp)
        cold_in_process = None if args.no_cold else startup(videos[0], args.device, args.quality,
                                                            tmp / "cache-in-process", tmp,
                                                            GPUAU_WARMUP="0")
        report["startup"] = {"cold_in_process": cold_in_process, "cold": cold,
                             "warm": startup(videos[0], args.device, args.quality, cache, tmp)}
        print_startup(report["startup"])
        for video in videos:
            workdir = tmp / f"{len(report['videos'])}"
            workdir.mkdir()
            v = bench_video(video, args.frames, args.device, args.quality, cache,
                            report["startup"]["warm"]["total_s"], workdir)
            report["videos"].append(v)
            print_video(v)
    # other people's edits to gpuau/ during the run make its figures a mix of two versions
    report["code_changed_during_run"] = source_state()["code_fingerprint"] != report["git"]["code_fingerprint"]
    if report["code_changed_during_run"]:
        print("\nWARNING: gpuau/ changed on disk during this run; its figures mix two versions of the code")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
