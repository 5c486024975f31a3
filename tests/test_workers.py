"""Corpus runs over local worker processes (``gpuau analyze --workers N``): the same bytes as one process, a bad
input reported once, a crashed worker's input analysed again by a new worker, retries bounded, the plan."""
import multiprocessing
import os
import pickle
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from gpuau.corpus import FAULT_ENV, run_corpus
from gpuau.io import AlignedFaces
from gpuau.pipeline import Analyzer
from gpuau.workers import WORKER_MEMORY, LocalPlan, plan_local_workers
from media import assert_retried_after_a_worker_died, files


def test_plan_local_workers():
    gb = 2**30
    # On the CPU one per core, at most one per input and as many as the free memory holds.
    assert plan_local_workers(10, "cpu", cores=2, memory=8 * gb) == LocalPlan(2, 1)
    assert plan_local_workers(3, "cpu", cores=16, memory=64 * gb) == LocalPlan(3, 5)
    assert plan_local_workers(100, "cpu", cores=16, memory=3 * WORKER_MEMORY) == LocalPlan(3, 5)
    assert plan_local_workers(100, "cpu", cores=16, memory=0) == LocalPlan(1, 16)
    assert plan_local_workers(100, "cpu", cores=16, memory=None) == LocalPlan(16, 1)  # no /proc/meminfo
    # A GPU keeps one process (its streams batch the inputs) unless told otherwise.
    assert plan_local_workers(10, "cuda", cores=16, memory=64 * gb) == LocalPlan(1, 16)
    assert plan_local_workers(10, "cuda", workers=4, cores=16) == LocalPlan(4, 4)
    assert plan_local_workers(2, "cpu", workers=4, cores=16) == LocalPlan(2, 8)
    # More workers than cores (--workers 4 on 2 cores) still get a thread each.
    assert plan_local_workers(10, "cpu", workers=4, cores=2) == LocalPlan(4, 1)
    assert plan_local_workers(10, "cuda:0", workers=3, cores=1) == LocalPlan(3, 1)
    with pytest.raises(ValueError, match="workers=0"):
        plan_local_workers(2, "cpu", workers=0)


@pytest.fixture
def fault(tmp_path, monkeypatch):
    """A marker file named by FAULT_ENV, which spawned workers inherit: the worker analysing the input it names
    exits after that input's first frame."""
    marker = tmp_path / "crash"
    monkeypatch.setenv(FAULT_ENV, str(marker))
    return marker


def test_workers_take_the_largest_inputs_first(media_dir, tmp_path):
    """CorpusRun.largest_first, the order of the queue local workers and Ray actors pull from: by bytes (an image
    folder by its files'), so no long video is left to run alone at the end; an unreadable input counts as empty."""
    from gpuau.corpus import CorpusRun

    names = ["gone.mp4", "changeLighting.wmv", "default.wmv", "2015-10-15-15-14.avi", "image_sequence"]
    inputs = [media_dir / n for n in names]
    run = CorpusRun(inputs, tmp_path / "out", progress=False)
    sizes = {n: 0 if n == "gone.mp4" else sum(f.stat().st_size for f in (media_dir / n).iterdir())
             if (media_dir / n).is_dir() else (media_dir / n).stat().st_size for n in names}
    assert [src.name for src, _ in run.largest_first()] == sorted(names, key=lambda n: -sizes[n])
    assert run.largest_first()[-1][0].name == "gone.mp4"
    assert [src.name for src, _ in run.todo] == names  # the run's own order stays the inputs'
    run.finish()


def test_same_bytes_as_one_process_and_resume(corpus, corpus_reference, tmp_path):
    out = tmp_path / "out"
    report = run_corpus(corpus, out, analyzer=Analyzer("cpu"), workers=2, progress=False)
    assert [o.status for o in report.outcomes] == ["done", "done", "done", "failed"]
    assert report.outcomes[3].reason.startswith("not a readable video (check")  # reported once, as the worker found it
    assert [o.frames for o in report.outcomes[:3]] == [30, 1, 30]
    assert files(out) == files(corpus_reference)
    assert not list(out.glob(".*"))  # no temporary files left

    mtimes = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_corpus(corpus, out, analyzer=Analyzer("cpu"), workers=2, progress=False)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped", "skipped", "failed"]
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_worker_dying_mid_video_is_retried_in_a_new_worker(corpus, corpus_reference, fault, tmp_path, capsys):
    fault.write_text("clip30.avi")
    out = tmp_path / "out"
    report = run_corpus(corpus[1:3], out, analyzer=Analyzer("cpu"), workers=2, progress=False)
    assert_retried_after_a_worker_died(report, out, fault, corpus_reference, capsys.readouterr().err)


def test_retries_are_bounded(corpus, fault, tmp_path):
    from gpuau.corpus import CorpusRun
    from gpuau.workers import schedule

    fault.write_text("clip30.avi")
    out = tmp_path / "out"
    run = CorpusRun(corpus[1:3], out, progress=False)
    schedule(run, "cpu", LocalPlan(2, 1), fmt="csv", progress=False, options=Analyzer("cpu").settings(),
             max_retries=0)
    sample, clip = run.finish().outcomes
    assert sample.status == "done"
    assert clip.status == "failed" and clip.reason == "its worker died 1 time(s); last: the process ended (exit status 1)"
    assert sorted(files(out)) == ["sample1.csv"]  # the partial clip30 output never appears under its name
    assert not list(out.glob(".*.tmp"))  # nor stays as a temporary file


def test_cli_workers(corpus, corpus_reference, tmp_path):
    """``gpuau analyze`` picks its workers by itself (2 on this 2-core machine, one per input at most), takes
    ``--workers N``, and refuses it beside ``--streams``."""
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}

    def gpuau(*args):
        return subprocess.run([sys.executable, "-m", "gpuau", "analyze", *args], env=env, capture_output=True,
                              text=True)

    out = tmp_path / "out"
    run = gpuau(*map(str, corpus[:3]), "-o", str(out), "--device", "cpu", "-v")
    assert run.returncode == 0, run.stderr
    assert "workers auto" in run.stderr
    plan = plan_local_workers(3, "cpu")
    assert plan.count == 1 or f"{plan.count} worker processes of {plan.threads} core(s) each" in run.stderr
    assert files(out) == {k: v for k, v in files(corpus_reference).items() if k != "broken.csv"}
    run = gpuau(str(corpus[1]), "-o", str(tmp_path / "one"), "--workers", "3", "--quiet")
    assert run.returncode == 0 and files(tmp_path / "one") == {"sample1.csv": (corpus_reference / "sample1.csv").read_bytes()}
    run = gpuau(str(corpus[1]), "-o", str(out), "--workers", "2", "--streams", "2")
    assert run.returncode == 2 and "exclude each other" in run.stderr
    run = gpuau(str(corpus[1]), "-o", str(out), "--workers", "0")
    assert run.returncode == 2 and "positive number of workers" in run.stderr


@pytest.mark.parametrize("how", ["SIGTERM to the command", "Ctrl-C (SIGINT to the process group)"])
def test_stopping_a_run_leaves_no_partial_output_and_no_process(media_dir, tmp_path, how):
    """A batch scheduler's SIGTERM, or Ctrl-C, while two workers write their outputs: the command ends (143, 130),
    the workers with it, and no partial output is left (the finished ones would stay)."""
    import signal
    import time

    out = tmp_path / "out"
    proc = _two_workers_writing(media_dir, out, signal.SIG_DFL)  # Ctrl-C's default, however the tests were started
    if how.startswith("SIGTERM"):
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (143 if how.startswith("SIGTERM") else 130), err
    assert ("terminated" if how.startswith("SIGTERM") else "interrupted") in err
    assert list(out.iterdir()) == []
    deadline = time.monotonic() + 30  # multiprocessing's resource tracker leaves once it sees the command gone
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(proc.pid)  # no process of the run is left


def test_ctrl_c_while_the_workers_start_prints_no_traceback_of_theirs(media_dir, tmp_path):
    """Ctrl-C reaches the whole process group, the workers too, which used to print a KeyboardInterrupt traceback
    each when it landed while they imported gpuau; they start with it ignored now, and the parent stops them."""
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    videos = [media_dir / "default.wmv", media_dir / "changeLighting.wmv"]
    proc = subprocess.Popen([sys.executable, "-m", "gpuau", "analyze", *map(str, videos), "-o", str(tmp_path / "out"),
                             "--device", "cpu", "--workers", "2", "--quality", "fast"], env=env, start_new_session=True,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while len(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()) < 3:
        assert time.monotonic() < deadline  # multiprocessing's resource tracker and the two workers, importing
        time.sleep(0.01)
    while _ignores_sigint(proc.pid):  # the parent's start() of the second, which ignores Ctrl-C for milliseconds
        assert time.monotonic() < deadline
        time.sleep(0.001)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (130, "gpuau: interrupted after 0 of 2 inputs (their outputs are kept; the same "
                                           "command does the rest)\n")


def _ignores_sigint(pid: int) -> bool:
    """Whether process ``pid`` ignores SIGINT now (its ``SigIgn`` mask in /proc)."""
    import signal

    with open(f"/proc/{pid}/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    return bool(mask >> (signal.SIGINT - 1) & 1)


def _two_workers_writing(media_dir, out, sigint) -> subprocess.Popen:
    """``gpuau analyze --workers 2`` of two videos in a new process group with SIGINT's disposition ``sigint``,
    once both workers write their outputs.  Two copies of the longest sample (842 frames): with default.wmv as the
    second, a machine busy elsewhere (CI's other stage) let it finish before the first worker wrote, and never were two
    outputs written at once."""
    import shutil
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    videos = [media_dir / "2015-10-15-15-14.avi", out.parent / "copy.avi"]
    shutil.copyfile(videos[0], videos[1])
    proc = subprocess.Popen([sys.executable, "-m", "gpuau", "analyze", *map(str, videos), "-o", str(out),
                             "--device", "cpu", "--workers", "2", "--quiet"], env=env, start_new_session=True,
                            stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    deadline = time.monotonic() + 120
    while len(list(out.glob(".*.tmp"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until both workers write
    assert proc.poll() is None and len(list(out.glob(".*.tmp"))) == 2
    return proc


def test_a_run_that_ignores_ctrl_c_keeps_its_workers(media_dir, tmp_path):
    """Started with SIGINT ignored (``nohup``, a shell's ``&``), a Ctrl-C to the process group stops nothing: the
    workers ignore it as the command does, instead of dying and being replaced."""
    import signal

    out = tmp_path / "out"
    proc = _two_workers_writing(media_dir, out, signal.SIG_IGN)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "died" not in err, err
    assert sorted(p.name for p in out.iterdir()) == ["2015-10-15-15-14.csv", "copy.csv", "gpuau-settings.jsonl"]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_that_cannot_start_stop_the_run_with_their_error(corpus, tmp_path):
    from gpuau.corpus import CorpusRun
    from gpuau.workers import WorkerError, schedule

    run = CorpusRun(corpus[1:3], tmp_path / "out", progress=False)
    with pytest.raises(WorkerError, match="no worker process could start: ValueError: quality='best'"):
        schedule(run, "cpu", LocalPlan(2, 1), fmt="csv", progress=False, options={"quality": "best"})
    assert run.finish().outcomes == []


def test_a_worker_that_dies_while_idle_is_replaced_without_spending_a_retry(corpus, corpus_reference, tmp_path):
    """Killed between two inputs (the out-of-memory killer), the worker's pipe breaks when it is handed the next one:
    that was a BrokenPipeError out of the command, the inputs after it neither analysed nor reported."""
    from gpuau.corpus import CorpusRun
    from gpuau.workers import schedule

    out = tmp_path / "out"
    run = CorpusRun(corpus[:3], out, progress=False)
    record, killed = run.record, []

    def record_then_kill_the_idle_worker(outcome):
        record(outcome)
        if not killed:
            (worker,) = [c for c in multiprocessing.active_children() if c.name == "gpuau-worker"]
            worker.kill()
            worker.join()
            killed.append(worker.pid)

    run.record = record_then_kill_the_idle_worker
    schedule(run, "cpu", LocalPlan(1, 2), fmt="csv", progress=False, options=Analyzer("cpu").settings(),
             max_retries=0)
    assert killed and [o.status for o in run.finish().outcomes] == ["done", "done", "done"]
    assert files(out) == {k: v for k, v in files(corpus_reference).items() if k in files(out)} and len(files(out)) == 3


def test_a_worker_that_cannot_be_restarted_fails_the_inputs_left_and_the_run_goes_on(corpus, fault, tmp_path,
                                                                                     monkeypatch):
    """The replacement of a dead worker cannot start (out of memory, the process limit): that was an OSError out of
    the command, the finished outputs unreported."""
    import errno
    import multiprocessing.context

    from gpuau.corpus import CorpusRun
    from gpuau.workers import schedule

    fault.write_text("clip30.avi")
    start, starts = multiprocessing.context.SpawnProcess.start, []

    def start_once(process):
        starts.append(process)
        if len(starts) > 1:
            raise OSError(errno.ENOMEM, "Cannot allocate memory")
        start(process)

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", start_once)
    run = CorpusRun([corpus[2], corpus[1]], tmp_path / "out", progress=False)  # clip30.avi first: its worker dies
    schedule(run, "cpu", LocalPlan(1, 2), fmt="csv", progress=False, options=Analyzer("cpu").settings())
    outcomes = run.finish().outcomes
    assert len(starts) == 2 and [o.status for o in outcomes] == ["failed", "failed"]
    assert {o.reason for o in outcomes} == {"not analysed: no worker left (a worker process could not be started "
                                            "([Errno 12] Cannot allocate memory))"}


def test_a_worker_ended_by_an_unexpected_error_says_so_and_exits_with_a_failure():
    """An error no handler expects (here a SystemExit while the worker builds its Analyzer) ended the worker with
    status 0 and no traceback: the parent reported "exit status 0" and retried."""
    script = ("import multiprocessing\n"
              "from gpuau import workers\n"
              "class Boom:\n"
              "    def __init__(self, *args):\n"
              "        raise SystemExit('boom')\n"
              "workers.CorpusWorker = Boom\n"
              "parent, child = multiprocessing.Pipe()\n"
              "workers._serve(child, 'cpu', 1, {}, False)\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stderr.rstrip().endswith("SystemExit: boom"), run.stderr
    # the parent killed with a message unread: the worker's read gives ConnectionResetError, no bug of its own
    script = ("from gpuau import workers\n"
              "class Reset:\n"
              "    def send(self, message):\n"
              "        pass\n"
              "    def recv(self):\n"
              "        raise ConnectionResetError(104, 'Connection reset by peer')\n"
              "workers.CorpusWorker = lambda *args: None\n"
              "workers._serve(Reset(), 'cpu', 1, {}, False)\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stderr) == (0, "")


def test_a_worker_waiting_for_its_next_input_ends_at_once_on_sigterm():
    """SIGTERM to a worker that had just finished an input (the parent took it for busy) only marked it as stopping:
    it waited for another input until the parent killed it 10 s later, each worker in turn."""
    import time

    from gpuau.workers import _serve

    parent, child = multiprocessing.get_context("spawn").Pipe()
    worker = multiprocessing.get_context("spawn").Process(target=_serve, args=(child, "cpu", 1, {"quality": "fast"},
                                                                               False))
    worker.start()
    child.close()
    try:
        assert parent.poll(120) and parent.recv()[0] == "ready"
        time.sleep(0.2)  # in conn.recv(), waiting
        worker.terminate()
        worker.join(60)  # it waited for an input for ever
        assert worker.exitcode == 0
    finally:
        if worker.is_alive():
            worker.kill()
        parent.close()


def test_inputs_left_when_every_worker_is_gone_fail_saying_so(corpus, tmp_path):
    """The local and the Ray scheduler, once no worker is left and none can start again: every queued input fails with
    the last start's error (WorkerDeaths.abandon), and the run goes on to its report."""
    from collections import deque

    from gpuau.corpus import CorpusRun, WorkerDeaths

    run = CorpusRun(corpus[1:3], tmp_path / "out", progress=False)
    queue = deque(run.todo)
    WorkerDeaths(run, queue, max_retries=2).abandon("MemoryError: out of memory")
    outcomes = run.finish().outcomes
    assert not queue and [o.status for o in outcomes] == ["failed", "failed"]
    assert {o.reason for o in outcomes} == {"not analysed: no worker left (MemoryError: out of memory)"}


def _faces_found(analyzer: Analyzer, image) -> int:
    return analyzer.analyze_image(image).faces_found


def test_an_analyzer_pickles_as_its_settings_into_a_process_pool(media_dir):
    an = Analyzer("cpu", quality="fast", au_static=True, write_aligned=AlignedFaces(size=224))
    again = pickle.loads(pickle.dumps(an))
    assert again.settings() == an.settings() and again.backend is an.backend
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_faces_found, an, media_dir / "sample1.jpg").result() == 1


def _recording_bars(monkeypatch, on_update=None):
    """Make gpuau draw its progress bars as on a terminal, into recording stand-ins (each bar's tqdm keywords, its
    count and total); ``on_update(bar)`` is called at each update."""
    import gpuau.corpus as corpus_module
    import gpuau.workers as workers_module

    bars = []

    class Bar(corpus_module._NoBar):
        def __init__(self, kwargs):
            super().__init__(kwargs.get("total"))
            self.desc = kwargs.get("desc")

        def update(self, n=1):
            super().update(n)
            if on_update is not None:
                on_update(self)

    def progress_bar(progress, **kwargs):
        bar = Bar(kwargs) if progress else corpus_module._NoBar(kwargs.get("total"))
        bars.append(bar)
        return bar

    for module in (corpus_module, workers_module):
        monkeypatch.setattr(module, "progress_bar", progress_bar)
        monkeypatch.setattr(module, "on_terminal", lambda: True)
    return bars


def test_progress_bars_count_each_videos_frames(corpus, tmp_path, monkeypatch):
    """On a terminal a video's bar counts its frames, sized by the container's count: in this process it ends at the
    video's 30 frames; from worker processes, whose progress messages the parent draws, it moves."""
    bars = _recording_bars(monkeypatch)
    clip = corpus[2]
    run_corpus([clip], tmp_path / "one", analyzer=Analyzer("cpu"), workers=1)
    (bar,) = [b for b in bars if b.desc == clip.name]
    assert (bar.n, bar.total) == (30, 30)
    bars.clear()
    run_corpus(corpus[1:3], tmp_path / "two", analyzer=Analyzer("cpu"), workers=2)
    (bar,) = [b for b in bars if b.desc == clip.name]
    assert bar.total == 30 and 0 < bar.n <= 30


def test_a_worker_killed_by_a_signal_is_reported_with_the_signal(corpus, tmp_path, monkeypatch):
    """The out-of-memory killer's SIGKILL while a worker analyses a video: the input's reason names signal 9."""
    from gpuau.corpus import CorpusRun
    from gpuau.workers import schedule

    killed = []

    def kill_the_busy_worker(bar):  # the parent draws the worker's first progress message: it is mid-video
        if not killed:
            (worker,) = [c for c in multiprocessing.active_children() if c.name == "gpuau-worker"]
            worker.kill()
            killed.append(worker.pid)

    _recording_bars(monkeypatch, on_update=kill_the_busy_worker)
    run = CorpusRun(corpus[2:3], tmp_path / "out", progress=False)
    schedule(run, "cpu", LocalPlan(1, 2), fmt="csv", progress=True, options=Analyzer("cpu").settings(),
             max_retries=0)
    (clip,) = run.finish().outcomes
    assert killed and clip.status == "failed"
    assert clip.reason == "its worker died 1 time(s); last: the process ended (signal 9)"
    assert not files(tmp_path / "out") and not list((tmp_path / "out").glob(".*.tmp"))


def test_an_input_whose_idle_worker_died_keeps_its_place_in_the_queue(corpus, tmp_path):
    """The input handed to a worker found dead (killed while idle) is the next one analysed: the largest-first order
    holds (at the back of the queue, a long video would be left for last)."""
    from gpuau.corpus import CorpusRun
    from gpuau.workers import schedule

    run = CorpusRun(corpus[:3], tmp_path / "out", progress=False)
    expected = [src for src, _ in run.largest_first()]
    record, order = run.record, []

    def record_then_kill_the_idle_worker(outcome):
        record(outcome)
        order.append(outcome.input)
        if len(order) == 1:
            (worker,) = [c for c in multiprocessing.active_children() if c.name == "gpuau-worker"]
            worker.kill()
            worker.join()

    run.record = record_then_kill_the_idle_worker
    schedule(run, "cpu", LocalPlan(1, 2), fmt="csv", progress=False, options=Analyzer("cpu").settings(),
             max_retries=0)
    assert order == expected and [o.status for o in run.finish().outcomes] == ["done", "done", "done"]


def test_an_analyzers_camera_goes_with_its_settings():
    an = Analyzer("cpu", quality="fast", camera=(600, 620, None, None))
    assert an.settings()["camera"] == an.camera and an.camera is not None
    again = pickle.loads(pickle.dumps(an))
    assert again.camera == an.camera and again.settings() == an.settings()
