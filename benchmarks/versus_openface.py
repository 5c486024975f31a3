"""gpuau against a real OpenFace ``FeatureExtraction`` on the same machine, side by side: speed and agreement.

    python -m benchmarks.versus_openface --openface /path/to/FeatureExtraction [--runs 3]
                                         [--videos default.wmv gap ...] [--quality exact] [--json OUT]

For each video the two commands run alternately ``--runs`` times, each a fresh process from decode to
CSV (start-up included): OpenFace with the CLNF model and the columns of the shared reference CSVs
(``-mloc model/main_clnf_general.txt -2Dfp -3Dfp -pdmparams -pose -aus -gaze``, its model folder found as
OpenFace finds it, beside its binary), gpuau as ``python -m gpuau analyze``. The table gives the best
and worst wall time of each, frames/s with start-up, CPU time and peak memory, then
``compare_openface.py``'s figures of gpuau's CSV against the CSV that OpenFace just wrote, and the gaze columns'
(``reference.gaze_agreement``).

    python -m benchmarks.versus_openface --compare REFERENCE.csv CANDIDATE.csv

prints the same agreement figures of two CSVs that exist (the shared reference CSVs and gpuau's, say).

Videos are the shared media's names or the derived clips of ``tests/derived_media.py`` (a face found late, lost
and re-detected, a cut to another person, mirrored, rolled, on its side, 320x240, an odd frame size, occluded, noisy,
dark, fast motion, a panning window, enlarged, a small face crossing an HD frame), written as lossless
FFV1 files first; the default is ``default.wmv``, ``2015-10-15-15-14.avi`` and every derived clip.
This is how the OpenFace CSVs in ``tests/data/openface-derived`` were made. Nothing of OpenFace is
part of gpuau: bring your own build (its licence is OpenFace's).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.run import SHARED, _child_env, environment, run_child

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from derived_media import CLIPS, write_clip  # noqa: E402
from reference import compare, gaze_agreement, read_reference  # noqa: E402

OPENFACE_ARGS = ["-mloc", "model/main_clnf_general.txt", "-2Dfp", "-3Dfp", "-pdmparams", "-pose", "-aus", "-gaze",
                 "-q"]
"""FeatureExtraction's options for the reference CSVs' columns (its default output, less the aligned faces, HOG and
tracked video) with the CLNF landmark model."""

DEFAULT_VIDEOS = ("default.wmv", "2015-10-15-15-14.avi", *CLIPS)


def resolve_video(name: str, clips: Path) -> Path:
    """A shared medium, a derived clip (written to ``clips`` once) or a path."""
    if name in CLIPS:
        path = clips / f"{name}.avi"
        return path if path.exists() else write_clip(name, SHARED / "media", clips)
    path = SHARED / "media" / name
    return path if path.exists() else Path(name)


def bench_video(video: Path, openface: Path, runs: int, quality: str, workdir: Path) -> dict:
    """Alternate runs of both tools on ``video``; their timings and the agreement of the last CSVs."""
    out_of, out_g = workdir / "openface", workdir / "gpuau"
    of_cmd = [openface, "-f", video, "-out_dir", out_of, *OPENFACE_ARGS]
    g_cmd = [sys.executable, "-m", "gpuau", "analyze", video, "-o", out_g, "--overwrite", "-q", "--quality", quality]
    times = {"openface": [], "gpuau": []}
    for _ in range(runs):
        times["openface"].append(run_child(of_cmd, dict(os.environ), workdir))
        times["gpuau"].append(run_child(g_cmd, _child_env(None), workdir))
    ref, ours = out_of / f"{video.stem}.csv", out_g / f"{video.stem}.csv"
    frames = len(read_reference(ref))
    res = {"video": str(video), "frames": frames, **agreement(ref, ours)}
    for tool, rs in times.items():
        walls = [r["wall_s"] for r in rs]
        res[tool] = {"wall_s": walls, "fps_with_startup": [frames / w for w in walls],
                     "cpu_s": [r["cpu_s"] for r in rs], "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)}
    return res


def agreement(reference: Path, candidate: Path) -> dict:
    """``compare``: ``compare_openface.py``'s figures of ``candidate`` against ``reference``; ``gaze``: the gaze
    columns' (None when either has none)."""
    return {"compare": compare(reference, candidate, SHARED), "gaze": gaze_agreement(reference, candidate)}


def print_agreement(r: dict) -> None:
    c, g = r["compare"], r["gaze"]
    r_values = [v for v in c["au_r"].values() if not math.isnan(v)]
    print(f"  agreement: success {c['success_agreement']:.4f}, landmarks mean {c['landmark_mean_px']:.3f} px "
          f"(p95 {c['landmark_p95_px']:.3f}), AU r mean {sum(r_values) / len(r_values):.4f} min {min(r_values):.4f}, "
          f"AU MAE max {max(c['au_mae'].values()):.3f}, AU_c mean {c['au_c_agreement_mean']:.4f}")
    if g is not None:
        print(f"  gaze: vectors {g['gaze_mae']:.4f} mean abs (max {g['gaze_max']:.4f}), "
              f"angles {g['angle_mae']:.4f} rad, "
              f"left eye {g['left_angle_deg_mean']:.3f} deg mean (max {g['left_angle_deg_max']:.2f}); eye landmarks "
              f"{g['eye_px_mean']:.3f} px (p99 {g['eye_px_p99']:.3f})"
              + ("" if g["eye_depth_mae"] is None else f", depth {g['eye_depth_mae']:.2f} mm"))


def print_video(r: dict) -> None:
    print(f"\n{Path(r['video']).name}: {r['frames']} frames")
    for tool in ("openface", "gpuau"):
        t = r[tool]
        print(f"  {tool:9s} wall {min(t['wall_s']):6.2f}-{max(t['wall_s']):6.2f} s   "
              f"{min(t['fps_with_startup']):6.1f}-{max(t['fps_with_startup']):6.1f} frames/s   "
              f"CPU {min(t['cpu_s']):6.2f}-{max(t['cpu_s']):6.2f} s   peak {t['peak_rss_mb']:.0f} MB")
    speed = [o / g for o, g in zip(r["openface"]["wall_s"], r["gpuau"]["wall_s"])]
    print(f"  gpuau / OpenFace speed (run by run): {min(speed):.2f}-{max(speed):.2f}x")
    print_agreement(r)


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--openface", type=Path, help="OpenFace's FeatureExtraction binary")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("REFERENCE", "CANDIDATE"),
                    help="only print the agreement of two existing CSVs")
    ap.add_argument("--videos", nargs="+", default=list(DEFAULT_VIDEOS),
                    help=f"shared media names, derived clips ({', '.join(CLIPS)}) or paths")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quality", default="exact", choices=("exact", "fast"))
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    if args.compare:
        print_agreement(agreement(*args.compare))
        return 0
    if args.openface is None or not os.access(args.openface, os.X_OK):
        ap.error(f"{args.openface}: not an executable (OpenFace's FeatureExtraction binary)")
    report = {"environment": environment(), "openface": str(args.openface.resolve()), "videos": []}
    with tempfile.TemporaryDirectory() as tmp:
        clips = Path(tmp) / "clips"
        clips.mkdir()
        for name in args.videos:
            workdir = Path(tempfile.mkdtemp(dir=tmp))
            r = bench_video(resolve_video(name, clips), args.openface.resolve(), args.runs, args.quality, workdir)
            print_video(r)
            report["videos"].append(r)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
