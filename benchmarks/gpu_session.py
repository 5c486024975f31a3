"""A lent GPU's checks, prepared to run as one command (the device machine is lent by chance and for minutes).

Here, on any machine with ``../shared`` beside the checkout::

    python -m benchmarks.gpu_session pack

copies what the checks read into ``.gpu-shared/`` (git-ignored, ~28 MiB): the model files of gpuau's manifest
(not the rest of OpenFace's folder), default.wmv, changeLighting.wmv and 2015-10-15-15-14.avi with their
reference CSVs.  The device machine sees only the working tree and the paths a call carries, so ``carry``
names ``.gpu-shared``.  There (no network; its image has Python with NumPy, Numba, CuPy, OpenCV, onnxruntime
and pytest), from the repository root::

    python3 -m benchmarks.gpu_session run --out "$OUT"

runs, each step with its own time limit and its output in ``OUT/<step>.txt``:

1. ``gpuau info``: CUDA device, CuPy, NVRTC, the model folder;
2. ``pytest -m gpu``: every kernel on ``cuda`` against its Numba twin, and the engine's CUDA tests;
3. ``benchmarks/bench_engine.py --device cuda --streams 1 8 64 --check``: engine throughput and its largest
   differences from the single-stream CPU pipeline (landmarks px, AU intensity, AU presence flips);
4. ``gpuau analyze default.wmv --device cuda``: one fresh process, start-up included, and its CSV against
   the CPU's (``compare_openface``-style figures from ``tests/reference.py``).

and writes ``OUT/summary.txt``: each step's exit status and wall time.  A step that fails or runs out of
time does not stop the next.  ``run --device emulated`` (or ``cpu``) rehearses the whole script on a machine
without a GPU.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / ".gpu-shared"
VIDEOS = ("default.wmv", "changeLighting.wmv", "2015-10-15-15-14.avi")


def pack(shared: Path, dest: Path = PACK) -> int:
    """Copy the manifest's model files and VIDEOS with their reference CSVs from ``shared`` into ``dest``."""
    from gpuau.models.manifest import load_manifest

    models = shared / "models" / "openface-2.2.0"
    if not models.is_dir():
        print(f"gpu_session pack: {models} not found (needs ../shared beside the checkout)", file=sys.stderr)
        return 1
    if dest.exists():
        shutil.rmtree(dest)
    files = [("models/openface-2.2.0/" + e.path) for e in load_manifest().in_groups()]
    files += [f"media/{v}" for v in VIDEOS]
    files += [f"reference/openface-clnf/{Path(v).stem}.csv" for v in VIDEOS]
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / rel, dest / rel)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"{dest}: {len(files)} files, {size / 2**20:.1f} MiB (carry it)")
    return 0


def _step(out: Path, name: str, cmd: list, env: dict, timeout: float) -> tuple:
    """Run ``cmd``, its output to ``out/<name>.txt``; (exit status or 'timeout', seconds)."""
    t = time.perf_counter()
    with open(out / f"{name}.txt", "w") as log:
        log.write("$ " + " ".join(map(str, cmd)) + "\n")
        log.flush()
        try:
            status = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            status = "timeout"
    return status, time.perf_counter() - t


def run(out: Path, device: str, frames: int, streams: list, packed: Path = PACK) -> int:
    """The steps of the module docstring on ``device``, from ``packed``, into ``out``."""
    if not (packed / "models").is_dir():
        print(f"gpu_session run: {packed} not found: run `python -m benchmarks.gpu_session pack` where ../shared "
              f"is, and carry .gpu-shared", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GPUAU_SHARED=str(packed), GPUAU_MODELS=str(packed / "models" / "openface-2.2.0"),
               GPUAU_CACHE=os.environ.get("GPUAU_CACHE", str(ROOT / ".gpuau-cache")),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    py = sys.executable
    video = packed / "media" / "default.wmv"
    steps = [
        ("info", [py, "-m", "gpuau", "info"], 120),
        ("pytest_gpu" if device == "cuda" else "pytest_kernels",
         [py, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
         + (["-m", "gpu"] if device == "cuda" else ["-k", "emulated", "tests/test_kernels_paw.py"]), 300),
        ("bench_engine", [py, "benchmarks/bench_engine.py", "--device", device, "--frames", str(frames), "--check",
                          "--streams", *map(str, streams)], 300),
        ("analyze_cpu", [py, "-m", "gpuau", "analyze", str(video), "-o", str(out / "cpu"), "--device", "cpu",
                         "--overwrite", "-q"], 180),
        ("analyze_" + device, [py, "-m", "gpuau", "analyze", str(video), "-o", str(out / f"on-{device}"), "--device",
                               device, "--overwrite", "-v"], 180),
        ("compare", [py, "-c", _COMPARE, str(out / "cpu" / "default.csv"), str(out / f"on-{device}" / "default.csv")],
         60),
    ]
    lines = []
    for name, cmd, limit in steps:
        status, seconds = _step(out, name, cmd, env, limit)
        lines.append(f"{name:16s} exit {status!s:8s} {seconds:7.1f} s")
        print(lines[-1], flush=True)
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    return 0 if all(" exit 0 " in line for line in lines) else 1


# The device's CSV against the CPU's: largest landmark and AU differences and the presence flips.
_COMPARE = """
import sys
import numpy as np
from gpuau.io import read_openface_csv
cpu, dev = (read_openface_csv(p) for p in sys.argv[1:3])
lm = [c for c in cpu if c.startswith(("x_", "y_"))]
reg = [c for c in cpu if c.startswith("AU") and c.endswith("_r")]
cls = [c for c in cpu if c.startswith("AU") and c.endswith("_c")]
d = lambda cols: max(float(np.abs(np.asarray(cpu[c], float) - np.asarray(dev[c], float)).max()) for c in cols)
flips = sum(int(np.count_nonzero(np.asarray(cpu[c]) != np.asarray(dev[c]))) for c in cls)
print(f"rows {len(cpu['frame'])} / {len(dev['frame'])}; max |d landmark| {d(lm):.3f} px; max |d AU_r| {d(reg):.3f}; "
      f"AU_c flips {flips}")
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_session", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pack", type=Path, default=PACK, help="the packed folder (default: .gpu-shared)")
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack", help="copy the models, videos and reference CSVs the checks read into .gpu-shared/")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    r = sub.add_parser("run", help="the checks, on the device machine")
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "gpu-session")))
    r.add_argument("--device", default="cuda", help="cuda (default); emulated or cpu to rehearse without a GPU")
    r.add_argument("--frames", type=int, default=60, help="frames per clip for bench_engine")
    r.add_argument("--streams", type=int, nargs="+", default=[1, 8, 64])
    args = ap.parse_args(argv)
    if args.verb == "pack":
        return pack(args.shared, args.pack)
    return run(args.out, args.device, args.frames, args.streams, args.pack)


if __name__ == "__main__":
    sys.exit(main())
