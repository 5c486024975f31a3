import os
from pathlib import Path

import pytest

from backends import backend  # noqa: F401  (the kernel-test backend fixture, tests/backends.py)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPUAU_SHARED", ROOT.parent / "shared")).resolve()
MODELS = SHARED / "models" / "openface-2.2.0"
MEDIA = SHARED / "media"
REFERENCE = SHARED / "reference" / "openface-clnf"

os.environ.setdefault("GPUAU_MODELS", str(MODELS))


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
def validator(models_dir):
    """OpenFace's detection validator on the CPU (``DetectionValidator.load``), loaded once for the tests."""
    from gpuau.landmarks.validator import DetectionValidator

    return DetectionValidator.load()
