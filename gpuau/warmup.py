"""Compile the CPU kernels into Numba's on-disk cache in short-lived child processes.

A process that compiles a Numba function keeps the compiled LLVM module for its whole life (and each
caller embeds its callees again), so a first run after an install, which compiles every ``cache=True``
kernel, peaked ~180 MB above a warm run (580-586 MB against ~400).  Here each group of kernels is
compiled by its own child process (``python -m gpuau.warmup GROUP``) that runs that group's
pipeline stage on a small synthetic frame, so the cache entries have exactly the argument types the
pipeline uses; the analysing process then only loads them from the cache.  Groups run one after the
other: the peak is the largest child's, not their sum.

:func:`ensure_warm` does it once per installed version of the kernels (a stamp file beside Numba's cache of the
kernels, keyed by the numba and gpuau versions and the size and mtime of every gpuau source that defines a cached
kernel, the files whose change invalidates Numba's cache, and of this module, and by the CPU target Numba compiles
for) when a CPU :class:`~gpuau.pipeline.Analyzer` first loads its models; ``gpuau warmup`` does it ahead, for
install scripts and container images; ``GPUAU_WARMUP=0`` turns it off. A child that fails only costs memory: its
kernels then compile in the analysing process, as before.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parent


def _synthetic_frame(height: int = 480, width: int = 640) -> "tuple[np.ndarray, np.ndarray]":
    """A decoded frame's arrays: BGR (H, W, 3) uint8 and grey (H, W) uint8, smooth noise."""
    from gpuau.video import to_gray8

    rng = np.random.default_rng(0)
    image = np.repeat(np.repeat(rng.integers(0, 256, (height // 8, width // 8, 3), np.uint8), 8, 0), 8, 1)
    image = np.ascontiguousarray(image)
    return image, to_gray8(image)


def _frontal_landmarks(pdm) -> np.ndarray:
    """(n, 2) float32: ``pdm``'s mean shape, frontal, at scale 1 in the middle of the synthetic frame."""
    return pdm.calc_shape_2d([1.0, 0.0, 0.0, 0.0, 320.0, 240.0], np.zeros(pdm.n_modes))


def _detect(models: Path) -> None:
    """MTCNN detection (PNet pyramid) and the detection validator (piece-wise affine warp, CNN)."""
    from gpuau.detect import MTCNN
    from gpuau.landmarks.pdm import PDM
    from gpuau.landmarks.validator import DetectionValidator

    image, gray = _synthetic_frame()
    MTCNN(models, device="cpu").detect(image)
    validator, landmarks = DetectionValidator.load(models), _frontal_landmarks(PDM.load(models=models))
    validator.check(gray, landmarks, np.zeros(3))
    # the engine's frames, staged as float32
    validator.check_batch([gray], [landmarks], [np.zeros(3)], staged=[(gray[None].astype(np.float32), 0)])


def _patch_responses(models: Path):
    """The response maps of every CLNF model at each of its scales on the synthetic frame (area warps
    and CCNF responses, through ``clnf.patch_responses``): ``[(model, scale, parameters, responses,
    params_global, params_local)]``."""
    from gpuau.device import resolve_device
    from gpuau.landmarks.clnf import frame_images, patch_responses
    from gpuau.landmarks.quality import load_clnf

    clnf = load_clnf(models)
    backend = resolve_device("cpu")
    _, gray = _synthetic_frame()
    images = frame_images(gray, backend)
    out = []
    for model, parameters in [(clnf.model, clnf.parameters)] + [(p.model, p.parameters) for p in clnf.parts]:
        g = np.array([[1.0, 0.0, 0.0, 0.0, 320.0, 240.0]], np.float32)
        loc = np.zeros((1, model.pdm.n_modes), np.float32)
        for scale, window in enumerate(parameters.window_sizes_init[:len(model.scales)]):
            if window:
                r = patch_responses(model, images, np.zeros(1, np.int64), g, loc, int(window), scale, backend)
                out.append((model, scale, parameters, r, g, loc))
    return out


def _patches(models: Path) -> None:
    """CLNF area warps and CCNF response maps."""
    _patch_responses(models)


def _nu_rlms(models: Path) -> None:
    """NU-RLMS at a patch scale (its maps' kernels loaded from the cache ``patches`` filled)."""
    from gpuau.device import resolve_device
    from gpuau.landmarks.clnf import _fit_scale, _refined

    model, scale, parameters, r, g, loc = _patch_responses(models)[0]
    _fit_scale(model, r, g, loc, scale, _refined(parameters, model, scale), np.ones(1, bool), resolve_device("cpu"))


def _landmarks(models: Path) -> None:
    """CLNF fit from a detection box and while tracking (PDM fits from landmarks, the rest of the fit's
    kernels loaded from the cache) and the head pose."""
    from gpuau.landmarks.quality import load_clnf
    from gpuau.landmarks.tracker import FaceTracker

    image, gray = _synthetic_frame()
    box = np.array([220.0, 140.0, 200.0, 200.0])
    tracker = FaceTracker(load_clnf(models), detect=lambda _: box, validate=lambda *_: 1.0, models=models,
                          device="cpu")
    for _ in range(2):  # the first frame fits from the box, the second tracks
        tracker.track(image, gray)


def _aus(models: Path) -> None:
    """AU stage: alignment (affine warp), FHOG, geometry, running medians, SVR/SVM, post-processing."""
    from gpuau.au import AUAnalyzer

    image, _ = _synthetic_frame()
    aus = AUAnalyzer(models, device="cpu")
    landmarks = np.array(_frontal_landmarks(aus.pdm), np.float32)  # as the pipeline's AU thread passes them
    for t in range(2):
        aus.add_frame(image, landmarks, True, t / 30.0)
    aus.finish()


GROUPS = {"detect": _detect, "patches": _patches, "nu_rlms": _nu_rlms, "landmarks": _landmarks, "aus": _aus}
"""Child processes of a warm-up, in order: name -> the stage it runs.  The landmark fit's kernels are
compiled by three children (each compile of a large Numba function stays in its process's memory:
one child peaked at 418 MB, three peak at 275, 315 and 342 MB)."""


def _stamp() -> Path:
    """Stamp file of a finished warm-up of this code for this machine's CPU target, beside Numba's cache of the
    kernels: ``gpuau-warm-<code>-<target>``.

    Numba keeps one cache entry per CPU target (its codegen's triple, CPU name and features) in the same files, so a
    cache folder shared by machines of different CPUs (a home folder on a cluster, a container image warmed on its
    build machine) holds kernels for each; a stamp of the code alone made the others skip their warm-up and compile
    in the analysing process (40 s and 705 MB for changeLighting.wmv, 2026-12-06).
    """
    import numba
    from numba.core.registry import cpu_target

    from gpuau import __version__
    from gpuau.cpu.nu_rlms import nu_rlms

    code = hashlib.sha256(f"{numba.__version__}|{__version__}".encode())
    for path in _kernel_sources():
        st = path.stat()
        code.update(f"|{path.relative_to(PACKAGE)}|{st.st_size}|{st.st_mtime_ns}".encode())
    target = hashlib.sha256(repr(cpu_target.target_context.codegen().magic_tuple()).encode())
    return Path(nu_rlms._cache._cache_path) / f"gpuau-warm-{code.hexdigest()[:20]}-{target.hexdigest()[:12]}"


def _kernel_sources() -> list:
    """The gpuau sources whose change invalidates Numba's cache of the kernels (those defining
    ``cache=True`` functions, :func:`gpuau.cpu.kernel_sources`) and this module (its stages set the
    signatures compiled)."""
    from gpuau.cpu import kernel_sources

    me = Path(__file__).resolve()
    return sorted(set(kernel_sources(PACKAGE)) | ({me} if me.is_relative_to(PACKAGE) else set()))


def is_warm() -> bool:
    """Whether :func:`warm_up` has filled Numba's cache for this version of the code."""
    return _stamp().is_file()


def warm_up(models: "str | os.PathLike | None" = None) -> bool:
    """Compile every group of :data:`GROUPS` in its own child process, one after the other.

    Parameters
    ----------
    models : path-like, optional
        OpenFace model folder (:func:`gpuau.models.resolve_models_dir`).

    Returns
    -------
    bool
        True when every child succeeded (the stamp is then written); a failure is logged, not raised.
    """
    from gpuau.models.store import resolve_models_dir

    models = resolve_models_dir(models)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE.parent), env.get("PYTHONPATH")) if p)
    stamp = _stamp()  # of the code the children compile
    t0 = time.perf_counter()
    for group in GROUPS:
        log.info("compiling the %s kernels", group)
        proc = subprocess.run([sys.executable, "-m", "gpuau.warmup", group, str(models)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            log.warning("compiling the %s kernels in a child process failed (exit %s); they compile in this "
                        "process instead:\n%s", group, proc.returncode, proc.stderr[-2000:])
            return False
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        target = stamp.name.rpartition("-")[2]
        for old in stamp.parent.glob(f"gpuau-warm-*-{target}"):  # earlier versions of the code, for this CPU
            old.unlink(missing_ok=True)
        stamp.touch()
    except OSError:
        pass
    log.info("compiled the CPU kernels in %.0f s", time.perf_counter() - t0)
    return True


def load_without_refresh() -> None:
    """Load gpuau's kernels from Numba's cache without first refreshing Numba's CPU target.

    Before every load from its cache, Numba refreshes the target: it imports some forty of its modules (linalg,
    typed containers, polynomials, ...) and registers their ~1,300 implementations, which only compiling uses.  The
    first refresh cost 0.15-0.18 s of every analysing process (GIL held, before the first frame is done); the
    cached machine code needs only Numba's runtime (NRT), initialised here as the refresh would.  Other Numba
    functions of the process load as before, and a kernel missing from the cache compiles as before (Numba's
    compiler refreshes the target itself).  Idempotent.
    """
    from numba.core import caching
    from numba.core.runtime.nrt import rtsys

    numba_load = caching.Cache.load_overload
    if getattr(numba_load, "gpuau_load", False) or not all(
            hasattr(caching.Cache, name) for name in ("_load_overload", "_guard_against_spurious_io_errors")):
        return  # installed already, or a Numba whose cache is built otherwise (0.60-0.68 are alike): left as it is

    def load_overload(self, sig, target_context):
        if not (getattr(self._py_func, "__module__", None) or "").startswith("gpuau."):
            return numba_load(self, sig, target_context)
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    load_overload.gpuau_load = True
    caching.Cache.load_overload = load_overload


def ensure_warm(models: "str | os.PathLike | None" = None) -> None:
    """:func:`warm_up` unless this version of the code is already warm (a stat of each source file), the
    environment variable ``GPUAU_WARMUP`` is ``0`` (then the kernels compile in this process) or Numba's JIT
    is disabled.  First it has gpuau's kernels load without Numba's target refresh (:func:`load_without_refresh`)."""
    import numba

    load_without_refresh()
    if os.environ.get("GPUAU_WARMUP") == "0" or numba.config.DISABLE_JIT or is_warm():
        return
    log.warning("compiling the CPU kernels once, in child processes (30-60 s; `gpuau warmup` does it ahead)")
    warm_up(models)


if __name__ == "__main__":
    GROUPS[sys.argv[1]](Path(sys.argv[2]))
