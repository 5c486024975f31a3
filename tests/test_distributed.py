"""Corpus runs on a local Ray cluster (2 CPUs, 2 workers): the same bytes as a single-process run, a crashed
worker's input retried on another worker, retries bounded, deterministic failures reported once."""
import os
import subprocess
import sys

import pytest

from gpuau.corpus import FAULT_ENV
from gpuau.distributed import ClusterError, WorkerPlan, analyze_corpus, plan_workers
from media import assert_retried_after_a_worker_died, files

ray = pytest.importorskip("ray")


def test_plan_workers():
    gpu_nodes = [{"CPU": 32.0, "GPU": 4.0}, {"CPU": 16.0, "GPU": 2.0}]
    assert plan_workers(gpu_nodes) == WorkerPlan("cuda", 6, num_gpus=1, num_cpus=1)
    assert plan_workers(gpu_nodes, "cuda", workers=2).count == 2
    assert plan_workers(gpu_nodes, "cpu") == WorkerPlan("cpu", 12, num_gpus=0, num_cpus=4)
    cpu_nodes = [{"CPU": 16.0}, {"CPU": 6.0}]
    assert plan_workers(cpu_nodes) == WorkerPlan("cpu", 5, num_gpus=0, num_cpus=4)
    # Three workers fit as 6 + 6 cores on the first node and 6 on the second.
    assert plan_workers(cpu_nodes, workers=3) == WorkerPlan("cpu", 3, num_gpus=0, num_cpus=6)
    with pytest.raises(ClusterError, match="workers=23 .* 22 CPU"):
        plan_workers(cpu_nodes, workers=23)
    with pytest.raises(ClusterError, match="no node .* GPU"):
        plan_workers(cpu_nodes, "cuda")
    # More workers than GPUs share them: 7 or 12 workers on 6 GPUs run 2 to a GPU, 13 run 3.
    assert plan_workers(gpu_nodes, workers=7) == WorkerPlan("cuda", 7, num_gpus=0.5, num_cpus=1)
    assert plan_workers(gpu_nodes, workers=12) == WorkerPlan("cuda", 12, num_gpus=0.5, num_cpus=1)
    assert plan_workers(gpu_nodes, workers=13) == WorkerPlan("cuda", 13, num_gpus=1 / 3, num_cpus=1)
    with pytest.raises(ClusterError, match="workers=49 .* 48 CPU"):
        plan_workers(gpu_nodes, workers=49)
    with pytest.raises(ValueError, match="cuda:1"):
        plan_workers(gpu_nodes, "cuda:1")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray with 2 CPUs; its workers inherit FAULT_ENV naming a marker file the tests may create."""
    import signal

    marker = tmp_path_factory.mktemp("fault") / "crash"
    environ, sigterm = dict(os.environ), signal.getsignal(signal.SIGTERM)
    os.environ[FAULT_ENV] = str(marker)
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        yield marker
    finally:
        ray.shutdown()
        os.environ.clear()  # ray.init sets variables (PYTHONBREAKPOINT, ...) that later tests' processes would inherit
        os.environ.update(environ)
        signal.signal(signal.SIGTERM, sigterm)  # and its own SIGTERM handler


def test_same_bytes_as_one_process_and_resume(cluster, corpus, corpus_reference, tmp_path):
    out = tmp_path / "out"
    report = analyze_corpus(corpus, out, workers=2, progress=False)
    assert [o.status for o in report.outcomes] == ["done", "done", "done", "failed"]
    assert report.outcomes[3].reason.startswith("not a readable video (check")  # reported once, as the worker found it
    assert [o.frames for o in report.outcomes[:3]] == [30, 1, 30]
    assert sorted(files(out)) == ["clip30.csv", "image_sequence.csv", "sample1.csv"]
    assert files(out) == files(corpus_reference)
    assert not list(out.glob(".*"))  # no temporary files, no driver token left

    mtimes = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    again = analyze_corpus(corpus, out, workers=2, progress=False)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped", "skipped", "failed"]
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_worker_dying_mid_video_is_retried_on_another(cluster, corpus, corpus_reference, tmp_path, capsys):
    cluster.write_text("clip30.avi")  # the worker analysing clip30.avi exits after its first frame
    out = tmp_path / "out"
    report = analyze_corpus(corpus[1:3], out, workers=2, progress=False)
    assert_retried_after_a_worker_died(report, out, cluster, corpus_reference, capsys.readouterr().err)


def test_retries_are_bounded(cluster, corpus, tmp_path):
    cluster.write_text("clip30.avi")
    out = tmp_path / "out"
    report = analyze_corpus(corpus[1:3], out, workers=2, max_retries=0, progress=False)
    assert not cluster.exists()
    sample, clip = report.outcomes
    assert sample.status == "done"
    assert clip.status == "failed" and clip.reason.startswith("its worker died 1 time(s)"), clip.reason
    assert sorted(files(out)) == ["sample1.csv"]  # the partial clip30 output never appears under its name


def test_output_finished_before_the_crash_is_kept(cluster, corpus, corpus_reference, tmp_path):
    cluster.write_text("sample1.jpg")  # an image reports progress once its output is written: then it exits
    out = tmp_path / "out"
    report = analyze_corpus(corpus[1:2], out, workers=2, progress=False)
    assert not cluster.exists()
    (o,) = report.outcomes
    assert (o.status, o.reason) == ("done", "output completed before its worker died")
    assert files(out) == {"sample1.csv": (corpus_reference / "sample1.csv").read_bytes()}


def test_an_interrupted_run_stops_its_busy_workers_and_leaves_no_partial_output(cluster, corpus, media_dir, tmp_path,
                                                                                 monkeypatch):
    """Ctrl-C while a worker analyses a video: the driver killed the actors without waiting, so the video's temporary
    file stayed (or its output appeared after the run, unrecorded); now the worker stops at its next frame and
    removes it, and the run ends with the finished outputs only."""
    import time

    from gpuau.corpus import CorpusRun

    out = tmp_path / "out"
    record = CorpusRun.record

    def interrupted_record(run, outcome):  # Ctrl-C once the photo is done and the video half-written
        record(run, outcome)
        if len(run.report.outcomes) == 1:
            t = time.monotonic()
            while not list(out.glob(".default*")) and time.monotonic() - t < 120:
                time.sleep(0.05)
            raise KeyboardInterrupt

    monkeypatch.setattr(CorpusRun, "record", interrupted_record)
    with pytest.raises(KeyboardInterrupt) as stopped:
        analyze_corpus([corpus[1], media_dir / "default.wmv"], out, workers=2, progress=False)
    assert [o.input.name for o in stopped.value.report.outcomes] == ["sample1.jpg"]
    assert sorted(p.name for p in out.iterdir()) == ["gpuau-settings.jsonl", "sample1.csv"]  # no temporary file


def test_cli_engine_ray(cluster, media_dir, tmp_path, capsys, monkeypatch):
    import gpuau.distributed
    from gpuau.cli import main

    plans = []
    real = gpuau.distributed.plan_workers
    monkeypatch.setattr(gpuau.distributed, "plan_workers", lambda *a: plans.append(real(*a)) or plans[-1])
    out = tmp_path / "out"
    sample = str(media_dir / "sample2.jpg")
    assert main(["analyze", sample, "-o", str(out), "--engine", "ray", "--device", "cpu", "--workers", "2"]) == 0
    assert "done             1" in capsys.readouterr().err
    assert sorted(files(out)) == ["sample2.csv"]
    assert plans == [WorkerPlan("cpu", 2, num_gpus=0, num_cpus=1)]  # 2 workers of the cluster's 2 CPUs


def test_workers_take_the_analyzer_settings(cluster, corpus, corpus_reference, tmp_path):
    from gpuau.cli import main

    settings = ["--quality", "fast", "--detect-every", "10", "--timestamps", "container", "--orientation", "display",
                "--au-static", "--fx", "600", "--fy", "600", "--device", "cpu", "--quiet"]
    local = tmp_path / "local"
    env = dict(os.environ)
    env.pop(FAULT_ENV, None)
    run = subprocess.run([sys.executable, "-m", "gpuau", "analyze", str(corpus[2]), "-o", str(local), *settings],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "out"
    assert main(["analyze", str(corpus[2]), "-o", str(out), "--engine", "ray", *settings]) == 0
    assert files(out) == files(local)
    assert files(out)["clip30.csv"] != files(corpus_reference)["clip30.csv"]  # the settings took effect


def test_a_cluster_that_cannot_be_reached_or_found_is_one_error_and_rays_handlers_are_undone(monkeypatch):
    """A wrong --address hung for over ten minutes (Ray retries for ever), '--address auto' with no cluster printed a
    traceback, and ray.init's own SIGTERM handler made the command exit 15 with none of its clean-up messages."""
    import signal
    import socket
    import types

    from gpuau import _signals, distributed

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match=rf"cannot reach the Ray cluster at 127.0.0.1:{port} .*ray start --head"):
        distributed._check_reachable(f"127.0.0.1:{port}")  # what _connect asks first of a HOST:PORT
    timeouts = []

    def unanswered(address, timeout):  # a host that drops the packets: the probe gives up after its timeout
        timeouts.append(timeout)
        raise socket.timeout("timed out")

    monkeypatch.setattr(distributed.socket, "create_connection", unanswered)
    with pytest.raises(ClusterError, match=r"cannot reach the Ray cluster at head:6379 \(timed out\)"):
        distributed._check_reachable("head:6379")
    assert timeouts == [distributed.CONNECT_TIMEOUT_S]
    monkeypatch.undo()

    def init(address=None, **kwargs):  # as ray.init: its SIGTERM handler, and no cluster for "auto"
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(15))
        if address == "auto":
            raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to")

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=init, shutdown=lambda: None)
    monkeypatch.setattr(distributed, "_import_ray", lambda: fake)
    previous = signal.signal(signal.SIGTERM, _signals.handle)
    try:
        with pytest.raises(ClusterError, match=r"cannot connect to a Ray cluster \(auto\): Could not find any"):
            distributed._connect("auto")
        assert signal.getsignal(signal.SIGTERM) is _signals.handle
        assert distributed._connect(None) is True and signal.getsignal(signal.SIGTERM) is _signals.handle
    finally:
        signal.signal(signal.SIGTERM, previous)
