"""Corpus runs over this machine's cores: worker processes, each analysing one input at a time.

One process analysing one video keeps about 1.5 cores busy on the CPU (its threads take turns on the GIL between
kernels; docs/performance.md), so a corpus runs fastest as several processes side by side. Each worker is a spawned
process holding one :class:`gpuau.corpus.CorpusWorker` (an Analyzer whose models load once) with its share of
the cores; the parent hands the next input (the largest first) to whichever worker is idle, over a pipe, so long
and short videos balance by themselves. Workers write their outputs as one process does (atomically, under the
names :func:`gpuau.corpus.output_paths` gives), and the parent keeps the bookkeeping
(:class:`gpuau.corpus.CorpusRun`: resume, progress, summary); :func:`gpuau.corpus.run_corpus` with ``workers``
runs it. A worker process that dies (a crash in a decoder, the out-of-memory killer) costs only the input it was
analysing: that input is analysed again by a fresh worker, at most ``max_retries`` times, then reported failed;
an input that fails by itself is an ordinary outcome, reported once.

:func:`plan_local_workers` chooses the number of workers from the cores, the free memory and the inputs. The
outputs are the same bytes as one process writes (the CPU kernels give the same bits on any number of cores).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass

from gpuau import _signals
from gpuau._gc import collect_rarely
from gpuau.corpus import VIDEO_BARS, CorpusRun, CorpusWorker, WorkerDeaths, on_terminal, progress_bar, say


class WorkerError(RuntimeError):
    """No worker process could start (the message gives the first one's error)."""


WORKER_MEMORY = 600 * 2**20
"""Memory to keep free per worker: one process peaks at ~380 MB on 640x480 video, ~430 MB at 1280x720 and ~540 MB
at 1920x1080 (README: Speed); 3840x2160 video takes ~850 MB, for which ``--workers`` sets fewer workers.  A long
video adds its offline AU pass, 0.3 KB per frame and twice that at its end (~0.6 GB for 10 hours at 30 frames/s):
``--workers`` too, for a corpus of such recordings."""

PROGRESS_EVERY_S = 0.25
"""How often a worker reports the frames it has done."""


def _available_memory() -> "int | None":
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _affinity() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class LocalPlan:
    """Worker processes for a corpus on this machine: ``count`` of them, ``threads`` cores each."""

    count: int
    threads: int


def plan_local_workers(inputs: int, device: str, workers: "int | None" = None, *, cores: "int | None" = None,
                       memory: "int | None" = None) -> LocalPlan:
    """How many worker processes analyse ``inputs`` inputs on this machine, and the cores of each.

    ``workers`` given: that many (at most one per input). Otherwise, on the CPU one per core, as many as
    the free memory holds at :data:`WORKER_MEMORY` each, at most one per input (measured on 2 cores: two
    processes of one core each analysed 1.26-1.32x the frames per second of one process using both, README:
    Speed, Corpora); on a GPU one (batching streams in one process is what keeps a GPU busy: ``--streams``).

    Parameters
    ----------
    inputs : int
        Inputs to analyse.
    device : str
        The resolved device name (``"cpu"``, ``"cuda"``, ``"emulated"``).
    workers : int, optional
    cores, memory : int, optional
        The CPU affinity and ``MemAvailable`` (default: this process's and this machine's).
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers={workers}: need at least one worker")
    cores = _affinity() if cores is None else cores
    if workers is None:
        if device != "cpu":
            workers = 1
        else:
            memory = _available_memory() if memory is None else memory
            fit = cores if memory is None else max(1, memory // WORKER_MEMORY)
            workers = min(cores, fit)
    count = max(1, min(workers, inputs))
    return LocalPlan(count, max(1, cores // count))


_stopping = threading.Event()
_waiting = threading.Event()  # set while a worker waits for its next input


def _stopped(signum, frame) -> None:
    """A worker's SIGINT and SIGTERM handler: it marks the worker as stopping, and the input being analysed stops at
    its next frame, where the progress call raises KeyboardInterrupt in plain Python code (raised by the handler,
    wherever the signal landed, inside a kernel's Python hook or a finalizer, it could be lost); a worker waiting for
    its next input (the signal came as it finished one) stops at once."""
    _stopping.set()
    if _waiting.is_set():
        raise KeyboardInterrupt


def _next_job(conn):
    """The parent's next ``(src, dst, fmt)``, or None: no more, or the worker is stopping."""
    _waiting.set()
    try:
        return None if _stopping.is_set() else conn.recv()
    finally:
        _waiting.clear()


def _serve(conn, device: str, threads: int, options: dict, interruptible: bool) -> None:
    """A worker process: build the worker, then analyse each ``(src, dst, fmt)`` the parent sends until None.
    ``interruptible``: whether the parent takes Ctrl-C (not under nohup or ``&``), which then reaches the worker too;
    until here the worker ignores it (a Ctrl-C while it starts is the parent's to handle, which stops it).

    Messages to the parent: ``("ready", pid)``, per input ``("open", frame_count)``, ``("progress", frames)``
    and ``("done", outcome)``; ``("error", text)`` if the worker cannot start."""
    if interruptible:
        signal.signal(signal.SIGINT, _stopped)
    signal.signal(signal.SIGTERM, _stopped)  # how the parent stops a busy worker
    collect_rarely()
    status = 0
    try:
        try:
            worker = CorpusWorker(device, threads, options, _stopping)
        except Exception as e:  # noqa: BLE001 - the parent reports it
            conn.send(("error", f"{type(e).__name__}: {e}"))
            return
        conn.send(("ready", os.getpid()))
        while (job := _next_job(conn)) is not None:
            last = [0.0]

            def progress(frames: int) -> None:  # the worker raises KeyboardInterrupt here once it is stopping
                now = time.monotonic()
                if now - last[0] >= PROGRESS_EVERY_S:
                    last[0] = now
                    conn.send(("progress", frames))

            outcome = worker.analyze(*job, progress=progress,
                                     on_open=lambda source: conn.send(("open", source.frame_count or 0)))
            conn.send(("done", outcome))
    except (KeyboardInterrupt, EOFError, ConnectionError):  # stopped (its output's temporary file is gone) or the
        pass                                                # parent left (a broken pipe, a reset connection)
    except BaseException:  # noqa: BLE001 - a bug: its traceback, and a status the parent reports
        traceback.print_exc()
        status = 1
    finally:  # without the interpreter's teardown (~0.15 s finalising Numba's and onnxruntime's objects), as `gpuau`
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


class _Process:
    """One worker process as the parent sees it: its pipe, the input it analyses and that input's bar."""

    def __init__(self, ctx, device: str, threads: int, options: dict):
        self.conn, child = ctx.Pipe()
        handler = signal.getsignal(signal.SIGINT)  # None: installed outside Python, left alone
        interruptible = handler is not signal.SIG_IGN
        self.process = ctx.Process(target=_serve, args=(child, device, threads, options, interruptible), daemon=True,
                                   name="gpuau-worker")
        # the child starts with Ctrl-C ignored, a disposition it inherits across spawn's exec (a blocked signal mask
        # is reset there), so that one landing while it unpickles its arguments and imports prints no traceback of
        # it: the parent, interrupted, stops it. A Ctrl-C in the few milliseconds of start() is lost to the parent.
        try:
            with _signals.kept_handlers(signal.SIGINT) as main:
                if main and interruptible and handler is not None:
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                self.process.start()
        except BaseException:  # no process (out of memory, the process limit): no pipe left open either
            self.conn.close()
            raise
        finally:
            child.close()
        self.ready = self.asked = False
        self.item = None  # (src, dst) being analysed
        self.bar = None
        self.position = 0

    def ask_to_stop(self) -> None:
        """Ask the process to end (once): an idle worker by its pipe, a busy one (the run was interrupted) by SIGTERM,
        on which it removes the output it was writing."""
        if self.asked or not self.process.is_alive():
            return
        self.asked = True
        if self.item is None:
            try:
                self.conn.send(None)
            except OSError:
                pass
        else:
            self.process.terminate()

    def stop(self) -> None:
        """End the process (asked to first: :meth:`ask_to_stop`; killed if it has not ended 10 s later), and close
        the pipe."""
        self.ask_to_stop()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

    @property
    def cause(self) -> str:
        """How the process ended, in words."""
        code = self.process.exitcode
        return f"exit status {code}" if code is None or code >= 0 else f"signal {-code}"


def schedule(run: CorpusRun, device: str, plan: LocalPlan, *, fmt: str, progress: bool, options: dict,
             max_retries: int = 1) -> None:
    """Analyse ``run.todo`` on ``plan.count`` worker processes with a pull queue, replacing those that die.

    ``device``: the workers' (``"cpu"``, ``"cuda:N"``); ``options``: their Analyzer's keywords
    (:meth:`gpuau.pipeline.Analyzer.settings`); ``max_retries``: times an input is analysed again after
    the worker analysing it died.  The CPU kernels must be compiled already (:func:`gpuau.warmup.ensure_warm`).

    Raises
    ------
    WorkerError
        No worker process could start (the error is named).
    """
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads, locks or GPU context
    queue = deque(run.largest_first())
    deaths = WorkerDeaths(run, queue, max_retries)
    positions = list(range(1, 1 + VIDEO_BARS))  # bar positions below the corpus bar
    procs: list = []
    ever_ready, start_error = False, ""

    def start() -> None:
        nonlocal start_error
        try:
            procs.append(_Process(ctx, device, plan.threads, options))
        except OSError as e:  # the run goes on with the workers it has (none left: the loop below says so)
            start_error = f"a worker process could not be started ({e})"
            say(f"warning: {start_error}")

    def assign(p: _Process) -> None:
        p.item = queue.popleft()
        try:
            p.conn.send((*p.item, fmt))
        except OSError:  # it died while idle (the out-of-memory killer): no retry spent, the input waits
            queue.appendleft(p.item)
            p.item = None
            died(p)
            return
        if progress and positions and on_terminal():
            p.position = positions.pop(0)
            p.bar = progress_bar(True, desc=p.item[0].name[:30], unit="frame", position=p.position, leave=False)

    def release(p: _Process) -> None:
        p.item = None
        if p.bar is not None:
            p.bar.close()
            p.bar = None
            positions.append(p.position)
            positions.sort()

    def died(p: _Process) -> None:
        nonlocal start_error
        procs.remove(p)
        p.stop()
        if not p.ready:
            start_error = start_error or f"the process ended ({p.cause}) while starting"
            return
        if p.item is not None:
            item = p.item
            release(p)
            deaths(item, f"the process ended ({p.cause})", "in a new worker")
        if queue and not run.report.stopped:
            start()

    try:
        for _ in range(plan.count):
            start()
        while (queue and not run.report.stopped) or any(p.item for p in procs):
            if not procs:
                if ever_ready:  # every worker died and none could restart
                    deaths.abandon(start_error)
                    return
                raise WorkerError(f"no worker process could start: {start_error}")
            for p in list(procs):  # assign() removes a worker found dead
                if p.ready and p.item is None and queue and not run.report.stopped:
                    assign(p)
            for ready in wait([p.conn for p in procs] + [p.process.sentinel for p in procs]):
                p = next((q for q in procs if ready in (q.conn, q.process.sentinel)), None)
                if p is None:  # already handled through its other handle
                    continue
                try:
                    kind, value = p.conn.recv()
                except (EOFError, OSError):
                    died(p)
                    continue
                if kind == "ready":
                    p.ready = ever_ready = True
                elif kind == "error":
                    start_error = value
                    say(f"warning: a gpuau worker process could not start: {value}")
                    procs.remove(p)
                    p.stop()
                elif kind == "open" and p.bar is not None:
                    p.bar.total = value or None
                    p.bar.refresh()
                elif kind == "progress" and p.bar is not None:
                    p.bar.update(value - p.bar.n)
                elif kind == "done":
                    release(p)
                    run.record(value)
    finally:
        for p in procs:  # all at once: each may take a moment to end
            p.ask_to_stop()
        for p in procs:
            p.stop()
            release(p)
