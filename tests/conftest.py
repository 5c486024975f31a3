import os
import subprocess
import sys
from pathlib import Path

import pytest

from backends import backend  # noqa: F401  (the kernel-test backend fixture, tests/backends.py)
from real_faces import aligned_faces, ccnf_frames, fit_faces  # noqa: F401  (session fixtures, tests/real_faces.py)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPUAU_SHARED", ROOT.parent / "shared")).resolve()
MODELS = SHARED / "models" / "openface-2.2.0"
MEDIA = SHARED / "media"
REFERENCE = SHARED / "reference" / "openface-clnf"

os.environ.setdefault("GPUAU_MODELS", str(MODELS))


NATIVE_LOG_LEVELS = {name: os.environ.get(name) for name in ("OPENCV_FFMPEG_LOGLEVEL", "OPENCV_LOG_LEVEL")}

FIRST = "test_warmup.py::test_warm_up_fills_the_cache_the_pipeline_loads"
"""Run first: on a fresh clone it compiles the kernels into the session's empty cache (else a first analysis would,
and the test again into a cache of its own: ~75-140 s each on 2 cores)."""


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not item.nodeid.endswith(FIRST))  # stable: the others keep their order


@pytest.fixture(autouse=True)
def native_log_levels(monkeypatch):
    """OpenCV's and FFmpeg's log levels as the session began, for each test: an in-process ``gpuau analyze`` or
    ``render`` (a test's, or a module fixture's before it) sets them in ``os.environ`` (gpuau.cli._quiet_native_logs),
    where later tests' child processes would inherit them."""
    for name, value in NATIVE_LOG_LEVELS.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def shared():
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED}: tests need OpenFace's model files and media beside the repo")
    return SHARED


@pytest.fixture(scope="session")
def models_dir(shared):
    return MODELS


@pytest.fixture(scope="session")
def media_dir(shared):
    return MEDIA


@pytest.fixture(scope="session")
def reference_dir(shared):
    return REFERENCE


@pytest.fixture(scope="session")
def clnf(models_dir):
    """OpenFace's CLNF model (main_clnf_general.txt with its parts), loaded once for every test that reads it."""
    from gpuau.landmarks.clnf import CLNF

    return CLNF.load()


@pytest.fixture(scope="session")
def validator(models_dir):
    """OpenFace's detection validator on the CPU (``DetectionValidator.load``), loaded once for the tests."""
    from gpuau.landmarks.validator import DetectionValidator

    return DetectionValidator.load()


@pytest.fixture(scope="session")
def corpus(media_dir, tmp_path_factory):
    """An image folder, an image, a 30-frame clip of default.wmv and a broken video."""
    from media import read_frames, write_clip

    folder = tmp_path_factory.mktemp("corpus")
    clip = write_clip(folder / "clip30.avi", read_frames(media_dir / "default.wmv", 30), fps=15.0)
    broken = folder / "broken.avi"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 50)
    return [media_dir / "image_sequence", media_dir / "sample1.jpg", clip, broken]


@pytest.fixture(scope="session")
def corpus_reference(corpus, tmp_path_factory):
    """The single-process run (``gpuau analyze --workers 1``) of :func:`corpus`, with 8 BLAS / OpenMP / Numba threads: the
    outputs do not depend on the thread counts (Ray gives a 1-CPU worker ``OMP_NUM_THREADS=1``, and
    workers run on machines of other core counts; docs/distributed.md, "Bit-identical outputs")."""
    from gpuau.corpus import FAULT_ENV

    out = tmp_path_factory.mktemp("reference")
    env = {**os.environ, "OMP_NUM_THREADS": "8", "OPENBLAS_NUM_THREADS": "8", "NUMBA_NUM_THREADS": "8"}
    env.pop(FAULT_ENV, None)
    run = subprocess.run([sys.executable, "-m", "gpuau", "analyze", *map(str, corpus), "-o", str(out),
                          "--device", "cpu", "--workers", "1", "--quiet"], env=env, capture_output=True, text=True)
    assert run.returncode == 1 and "broken.avi" in run.stderr, run.stderr
    return out
