"""Corpus runs on a Ray cluster: one long-lived worker per GPU (or per few CPU cores), a pull queue, retries.

Each worker is a Ray actor holding one :class:`gpuau.pipeline.Analyzer`, so models load once per worker.
The driver hands the next input to whichever worker is idle, so long and short videos balance by
themselves. Outputs go to a folder every node sees (local disk for a one-machine cluster, NFS or another
shared file system otherwise), named as :func:`gpuau.corpus.run_corpus` names them, with the same resume
rule (inputs whose complete output exists are skipped). A worker's process that dies (crash, out of
memory, lost node) costs only the input it was analysing: that input goes back to the front of the queue,
at most ``max_retries`` times, and a new worker replaces the dead one. An input that fails by itself
(unreadable, no frames) is a normal result of the worker and is reported once, never retried.

Ray is an optional dependency (gpuau's ``[ray]`` extra, or ``pip install ray``); ``import gpuau.distributed`` does not import it.
See ``docs/distributed.md``.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from gpuau import _signals
from gpuau._deps import DependencyError
from gpuau.corpus import CorpusReport, CorpusRun, CorpusWorker, WorkerDeaths, finish_run, output_settings, say

CPU_CORES_PER_WORKER = 4
"""Cores per worker on CPU nodes when ``workers`` is not given: a node of ``n`` cores runs ``n // 4`` workers."""

START_TIMEOUT_S = 600.0
"""How long the driver waits for a worker to start (scheduling, imports, models) while no worker is running."""

STOP_TIMEOUT_S = 30.0
"""How long an interrupted run waits for its busy workers to stop (each stops at its input's next frame, removing
that input's temporary files) before it kills them."""


class ClusterError(RuntimeError):
    """The Ray cluster cannot run the corpus (no worker could start, too few resources for ``workers``)."""


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers to start and what each asks Ray for.

    Attributes
    ----------
    device : str
        The workers' gpuau device (``"cuda"``: the GPU Ray assigns to the worker).
    count : int
    num_gpus : float
        Ray's GPU share of one worker: 1, or ``1 / k`` for ``k`` workers on each GPU.
    num_cpus : int
        Ray's CPUs of one worker.
    """

    device: str
    count: int
    num_gpus: float
    num_cpus: int


def plan_workers(nodes: "list[dict]", device: str = "auto", workers: "int | None" = None) -> WorkerPlan:
    """Workers for a cluster: one per GPU (``workers`` beyond the GPUs share them, ``k`` to a GPU), or on
    CPU nodes one per :data:`CPU_CORES_PER_WORKER` cores.

    Parameters
    ----------
    nodes : list of dict
        Resources of each live node, e.g. ``[{"CPU": 32.0, "GPU": 4.0}, {"CPU": 16.0}]``.
    device : str
        ``"auto"`` (GPU workers if the cluster has GPUs), ``"cuda"``, ``"cpu"`` or ``"emulated"``. A fixed
        ``"cuda:N"`` is refused: Ray assigns each worker its GPU.
    workers : int, optional
        Number of workers. On GPU clusters, more workers than GPUs run ``k = ceil(workers / GPUs)`` to a
        GPU (each asks Ray for ``1 / k`` of one), several host processes feeding each GPU; on CPU nodes
        the cores per worker are the most that still let ``workers`` workers fit on the nodes.

    Returns
    -------
    WorkerPlan
    """
    if device.startswith("cuda:"):
        raise ValueError(f"device {device!r}: on a Ray cluster each worker gets its GPU from Ray; use 'cuda' or 'auto'")
    if workers is not None and workers < 1:
        raise ValueError(f"workers={workers}: need at least one worker")
    gpus = [int(n.get("GPU", 0)) for n in nodes]
    cpus = [int(n.get("CPU", 0)) for n in nodes]
    if device == "cuda" or (device == "auto" and sum(gpus)):
        if not sum(gpus):
            raise ClusterError("device 'cuda' but no node of the Ray cluster has a GPU")
        if workers is None or workers <= sum(gpus):
            return WorkerPlan("cuda", workers or sum(gpus), num_gpus=1, num_cpus=1)
        per_gpu = -(-workers // sum(gpus))
        if workers > sum(cpus):
            raise ClusterError(f"workers={workers} but the Ray cluster has {sum(cpus)} CPU(s): at least one per worker")
        return WorkerPlan("cuda", workers, num_gpus=1 / per_gpu, num_cpus=1)
    device = "cpu" if device == "auto" else device
    if not sum(cpus):
        raise ClusterError("the Ray cluster has no CPU")
    if workers is None:
        cores = min(CPU_CORES_PER_WORKER, max(cpus))
        return WorkerPlan(device, sum(c // cores for c in cpus), num_gpus=0, num_cpus=cores)
    fitting = [k for k in range(1, max(cpus) + 1) if sum(c // k for c in cpus) >= workers]
    if not fitting:
        raise ClusterError(f"workers={workers} but the Ray cluster has {sum(cpus)} CPU(s): at least one per worker")
    return WorkerPlan(device, workers, num_gpus=0, num_cpus=max(fitting))


class RayWorker(CorpusWorker):
    """A Ray actor's :class:`gpuau.corpus.CorpusWorker`, which first checks that it sees the output folder, and which
    :meth:`stop` stops while it analyses (the actor runs two calls at once: ``max_concurrency=2``)."""

    def stop(self) -> None:
        """Stop the input being analysed (the driver was interrupted: no output may appear after the run)."""
        self.stopping.set()

    def ready(self, token: str) -> str:
        """Where this worker runs; fails unless the driver's ``token`` file is visible (shared output folder)."""
        host = socket.gethostname()
        if not Path(token).is_file():
            raise ClusterError(f"worker on {host} does not see {token}: the output folder must be on storage "
                               f"shared by every node (e.g. NFS mounted at the same path)")
        return f"{host} pid {os.getpid()} device {self.analyzer.backend.name}"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise DependencyError("Ray is not installed; fix: pip install 'ray>=2.30' (on every node)") from None
    return ray


CONNECT_TIMEOUT_S = 10.0
"""How long a ``HOST:PORT`` cluster address may take to answer before the run stops saying so (Ray itself retries
an unreachable address for ever)."""


def _check_reachable(address: str) -> None:
    """Raise :class:`ClusterError` unless something answers at the cluster address ``HOST:PORT`` (the head node's GCS
    port) within :data:`CONNECT_TIMEOUT_S`."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address} ({e}): check the address (the head node's "
                           f"HOST:6379) and that `ray start --head` runs there") from None


def _connect(address: "str | None") -> bool:
    """Connect to Ray unless this process already is; True when this call connected (and must shut down).

    The signal handlers in place before (the ``gpuau`` command's: exit statuses 130 / 143, clean-up) are put back:
    ``ray.init`` installs its own SIGTERM handler, which exits with status 15."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    if address not in (None, "auto") and not address.startswith("ray://"):
        _check_reachable(address)
    try:
        with _signals.kept_handlers(signal.SIGINT, signal.SIGTERM):
            ray.init(address=address, logging_level=logging.WARNING,
                     include_dashboard=False if address is None else None)
    except ConnectionError as e:  # "auto" with no cluster running
        raise ClusterError(f"cannot connect to a Ray cluster ({address}): {e}") from None
    except BaseException:  # interrupted while Ray starts: its processes go with it
        if ray.is_initialized():
            ray.shutdown()
        raise
    return True


def _schedule(run: CorpusRun, plan: WorkerPlan, *, fmt: str, max_retries: int, options: dict) -> None:
    """Analyse ``run.todo`` on ``plan.count`` actors with a pull queue, replacing actors that die."""
    import ray
    from ray.exceptions import RayError
    Worker = ray.remote(RayWorker).options(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, max_restarts=0,
                                              max_task_retries=0, max_concurrency=2)
    token = run.outdir / f".gpuau-ray-{uuid.uuid4().hex}"
    token.touch()
    queue = deque(run.largest_first())
    died = WorkerDeaths(run, queue, max_retries)
    starting: dict = {}  # ready() ref -> (actor, start time)
    busy: dict = {}  # analyze() ref -> (actor, (src, dst))
    idle: list = []
    actors: list = []
    ever_ready, start_error = False, ""

    def start_worker():
        actor = Worker.remote(plan.device, plan.num_cpus, options)
        actors.append(actor)
        starting[actor.ready.remote(str(token))] = (actor, time.monotonic())

    def worker_died(actor, item, error):
        ray.kill(actor)
        cause = str(error).strip().splitlines()[0] if str(error).strip() else ""
        died(item, f"{type(error).__name__}: {cause}" if cause else type(error).__name__, "on another worker")
        if queue:
            start_worker()

    try:
        for _ in range(plan.count):
            start_worker()
        while busy or (queue and not run.report.stopped):
            while idle and queue and not run.report.stopped:
                actor, item = idle.pop(), queue.popleft()
                busy[actor.analyze.remote(*item, fmt)] = (actor, item)
            if not busy and not idle:
                if not starting:
                    if not ever_ready:
                        raise ClusterError(f"no gpuau worker could start on the Ray cluster: {start_error}")
                    died.abandon(start_error)
                    break
                waited = time.monotonic() - min(t for _, t in starting.values())
                if waited > START_TIMEOUT_S:
                    raise ClusterError(f"no gpuau worker started within {START_TIMEOUT_S:.0f} s: the Ray cluster "
                                       f"lacks free resources ({plan.num_gpus} GPU, {plan.num_cpus} CPU per worker)")
            done, _ = ray.wait([*busy, *starting], num_returns=1, timeout=10)
            for ref in done:
                if ref in starting:
                    actor, _ = starting.pop(ref)
                    try:
                        ray.get(ref)
                    except RayError as e:
                        start_error = str(e).strip().splitlines()[-1]
                        say(f"warning: a gpuau worker could not start: {start_error}")
                        ray.kill(actor)
                        continue
                    ever_ready = True
                    idle.append(actor)
                    continue
                actor, item = busy.pop(ref)
                try:
                    outcome = ray.get(ref)
                except RayError as e:  # the worker died; the input's own failures arrive as outcomes
                    worker_died(actor, item, e)
                    continue
                run.record(outcome)
                idle.append(actor)
    finally:
        try:
            if busy:  # interrupted (or a bug): no output may appear after the run, nor go unrecorded
                _stop_busy(ray, run, busy)
        finally:
            for actor in actors:
                ray.kill(actor)
            token.unlink(missing_ok=True)


def _stop_busy(ray, run: CorpusRun, busy: dict) -> None:
    """Stop the workers still analysing (``busy``: ``analyze`` ref -> (actor, input)) and wait for them, up to
    :data:`STOP_TIMEOUT_S`: each removes its input's temporary files; an input finished meanwhile is recorded."""
    from ray.exceptions import RayError

    for actor, _ in busy.values():
        actor.stop.remote()
    done, _ = ray.wait(list(busy), num_returns=len(busy), timeout=STOP_TIMEOUT_S)
    for ref in done:
        try:
            outcome = ray.get(ref)
        except RayError:  # stopped (KeyboardInterrupt in the worker), or it died
            continue
        run.record(outcome)


def analyze_corpus(inputs: Iterable, out: "str | os.PathLike", *, address: "str | None" = None, device: str = "auto",
                   fmt: str = "csv", overwrite: bool = False, max_retries: int = 2, workers: "int | None" = None,
                   progress: bool = True, models: "str | os.PathLike | None" = None, multi_face: bool = False,
                   timestamps: str = "openface", quality: str = "exact",
                   detect_every: "int | None" = None, verbose: bool = False,
                   orientation: str = "openface", au_static: bool = False, camera=None, write_hog: bool = False,
                   write_aligned: bool = False, columns=None) -> CorpusReport:
    """:func:`gpuau.corpus.run_corpus` on a Ray cluster: every input analysed by one of many workers.

    Parameters
    ----------
    inputs : iterable of path-like
        Expanded with :func:`gpuau.corpus.expand_inputs`; paths must be valid on every node.
    out : path-like
        Output folder, on storage shared by every node.
    address : str, optional
        Ray cluster address (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``); None starts a Ray on
        this machine. A process already connected to Ray uses that connection.
    device : str
        ``"auto"`` (a worker per GPU if the cluster has GPUs, else CPU workers), ``"cuda"``, ``"cpu"``.
    fmt : {"csv", "parquet"}
    overwrite : bool
        Redo inputs whose output exists (default: skip them, which makes a rerun resume).
    max_retries : int
        Times an input goes to another worker after the worker analysing it died.
    workers : int, optional
        Number of workers (default: see :func:`plan_workers`).
    progress : bool
        Corpus progress bar on stderr, advanced as results arrive.
    verbose : bool
        A line per input on stderr as its result arrives.
    models : path-like, optional
        OpenFace model folder, resolved on each node (default: each node's ``GPUAU_MODELS`` etc.).
    multi_face : bool
        FaceLandmarkVidMulti's rows (see :class:`gpuau.pipeline.Analyzer`).
    timestamps, quality, detect_every, orientation, au_static, camera, write_hog, write_aligned, columns
        The workers' Analyzer settings, as for :class:`gpuau.pipeline.Analyzer` (``quality`` by name).

    Returns
    -------
    CorpusReport
        Outcomes in input order; an input whose output was completed just before its worker died is
        ``"done"`` with zero frames (its output is not written again).
    """
    from gpuau.landmarks.quality import get_quality
    from gpuau.pipeline import table_columns

    options = dict(models=models, multi_face=multi_face, timestamps=timestamps, quality=quality,
                   detect_every=detect_every, orientation=orientation, au_static=au_static, camera=camera,
                   write_hog=write_hog, write_aligned=write_aligned, columns=table_columns(columns, get_quality(quality)))
    run = CorpusRun(inputs, out, fmt=fmt, overwrite=overwrite, progress=progress, verbose=verbose,
                    write_hog=write_hog, write_aligned=write_aligned, settings=output_settings(options))

    def body():
        if not run.todo:
            return
        ray = _import_ray()
        connected = _connect(address)
        try:
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
            plan = plan_workers(nodes, device, workers)
            _schedule(run, plan, fmt=fmt, max_retries=max_retries, options=options)
        finally:
            if connected:
                ray.shutdown()

    return finish_run(run, body)
