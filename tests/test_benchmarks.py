"""Smoke test of the benchmark harness (``python -m benchmarks.run``): it runs on a few frames and its JSON
has every figure, each stage wired to the pipeline's calls.  No timing is asserted."""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["decode", "detect", "landmarks", "validate", "pose", "align", "HOG", "geometry", "AU predict",
          "post-process", "write", "other"]


def test_benchmark_json_on_ten_frames(media_dir, tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "benchmarks.run", str(media_dir / "default.wmv"), "--frames", "10", "--no-cold",
           "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "landmarks" in proc.stdout and "end to end" in proc.stdout
    report = json.loads(out.read_text())

    assert re.fullmatch(r"[0-9a-f]{40}", report["git"]["commit"])
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    assert {"numpy", "numba", "onnxruntime"} <= set(report["versions"])
    assert report["startup"]["cold"] is None
    warm = report["startup"]["warm"]
    assert warm["total_s"] == pytest.approx(warm["interpreter_s"] + warm["import_s"] + warm["models_jit_s"])
    # the measured processes ran gpuau from bytecode, as an installed package does, even where
    # PYTHONDONTWRITEBYTECODE is set (benchmarks.run.compile_package)
    assert all(Path(importlib.util.cache_from_source(str(m))).exists() for m in (ROOT / "gpuau").rglob("*.py"))

    (video,) = report["videos"]
    assert (video["width"], video["height"], video["frames"]) == (640, 480, 10)
    run = video["in_process"]
    assert list(run["stages"]) == STAGES
    calls = {stage: t["calls"] for stage, t in run["stages"].items()}
    # the first frame detects and fits 11 rotations in one batch; each later frame is tracked once
    assert calls["detect"] >= 1 and calls["landmarks"] >= 1 + 9
    assert calls["validate"] >= 1 and calls["pose"] == 10  # the head pose, 3D landmarks and gaze, once per frame
    assert calls["align"] == calls["HOG"] == calls["geometry"] > 0  # tracked frames
    assert calls["AU predict"] == 10 and calls["post-process"] == 1 and calls["write"] == 2
    stage_sum = sum(t["ms_per_frame"] for stage, t in run["stages"].items() if stage != "decode")
    assert stage_sum == pytest.approx(run["ms_per_frame"])

    e2e = video["end_to_end"]
    assert e2e["frames"] == 10 and e2e["command"][1:4] == ["-m", "gpuau", "analyze"]
    assert e2e["wall_s"] > 0 and e2e["fps_with_startup"] > 0 and e2e["peak_rss_mb"] > 50


def test_thread_sampler_charges_each_thread_its_cpu():
    """benchmarks.threads: a busy named thread gets its CPU, an idle one none (no timing asserted beyond
    'busy > 0')."""
    import threading
    import time

    from benchmarks.threads import ThreadSampler

    def spin(seconds):
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    with ThreadSampler(interval=0.01) as sampler:
        busy = threading.Thread(target=spin, args=(0.3,), name="busy")
        idle = threading.Thread(target=time.sleep, args=(0.3,), name="idle")
        busy.start(), idle.start()
        busy.join(), idle.join()
    per = sampler.per_thread()
    assert per["busy"] > 0.1 and "idle" not in per and "benchmark-sampler" not in per


def test_gpu_session_rehearsed_on_the_cpu(shared, tmp_path):
    """The lent-GPU script, packed from ../shared and run with --device cpu: every step runs and exits 0, the
    pack holds only the manifest's model files and the three videos with their references."""
    from gpuau.models.manifest import load_manifest

    packed, out = tmp_path / "pack", tmp_path / "out"
    steps = [sys.executable, "-m", "benchmarks.gpu_session", "--pack", str(packed)]
    proc = subprocess.run([*steps, "pack", "--shared", str(shared)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    models = [p for p in (packed / "models").rglob("*") if p.is_file()]
    assert len(models) == len(load_manifest().in_groups())
    assert sorted(p.name for p in (packed / "media").iterdir()) == ["2015-10-15-15-14.avi", "changeLighting.wmv",
                                                                    "default.wmv"]
    proc = subprocess.run([*steps, "run", "--device", "cpu", "--streams", "1", "--frames", "3", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (out / "summary.txt").read_text().splitlines()
    assert [line.split()[0] for line in summary] == ["info", "pytest_kernels", "bench_engine", "analyze_cpu",
                                                     "analyze_cpu", "compare"]
    assert "max |d landmark| 0.000 px; max |d AU_r| 0.000; AU_c flips 0" in (out / "compare.txt").read_text()


def test_versus_openface_with_a_stand_in_binary(tmp_path):
    """``benchmarks.versus_openface`` runs the given FeatureExtraction with the reference CSVs' options on a
    derived clip, then gpuau, and compares the two CSVs.  The stand-in writes OpenFace's kept CSV for the clip
    (tests/data/openface-derived), so the figures are the test_derived_media ones.  No timing is asserted."""
    fake = tmp_path / "FeatureExtraction"
    kept = ROOT / "tests" / "data" / "openface-derived" / "mirror.csv.gz"
    fake.write_text(f"""#!{sys.executable}
import gzip, sys
from pathlib import Path
args = sys.argv[1:]
assert args[args.index("-mloc") + 1] == "model/main_clnf_general.txt" and "-aus" in args and "-pdmparams" in args
out = Path(args[args.index("-out_dir") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / (Path(args[args.index("-f") + 1]).stem + ".csv")).write_bytes(gzip.decompress(Path({str(kept)!r}).read_bytes()))
""")
    fake.chmod(0o755)
    out = tmp_path / "vs.json"
    cmd = [sys.executable, "-m", "benchmarks.versus_openface", "--openface", str(fake), "--videos", "mirror",
           "--runs", "1", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gpuau / OpenFace speed" in proc.stdout
    (video,) = json.loads(out.read_text())["videos"]
    assert video["frames"] == 88 and video["compare"]["success_agreement"] == 1.0
    assert video["compare"]["landmark_mean_px"] < 0.05
    assert len(video["openface"]["wall_s"]) == len(video["gpuau"]["wall_s"]) == 1


def test_corpus_benchmark(corpus, tmp_path):
    """``benchmarks.corpus`` runs one process and worker processes on copies of a clip and finds the same bytes.
    No timing is asserted."""
    out = tmp_path / "corpus.json"
    cmd = [sys.executable, "-m", "benchmarks.corpus", str(corpus[2]), "--copies", "2", "--workers", "2", "--json",
           str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "throughput ratio" in proc.stdout
    report = json.loads(out.read_text())
    assert (report["frames"], report["videos"], report["identical"]) == (60, 2, True)
    assert [len(r) for r in report["runs"].values()] == [1, 1]
