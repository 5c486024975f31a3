"""Model folder resolution (minimal; extended by the model-store work)."""
from __future__ import annotations

import os
from pathlib import Path

LANDMARK_DIR = "lib/local/LandmarkDetector/model"
AU_DIR = "lib/local/FaceAnalyser/AU_predictors"


class ModelStoreError(RuntimeError):
    """Model files are missing or corrupt; the message names the file and the command that fixes it."""


def resolve_models_dir(models: "str | os.PathLike | None" = None) -> Path:
    """Folder holding OpenFace's files in its repository layout (``lib/local/...``)."""
    for cand in (models, os.environ.get("GPUAU_MODELS")):
        if cand:
            p = Path(cand).expanduser()
            if (p / LANDMARK_DIR).is_dir():
                return p
            raise ModelStoreError(f"model folder {p} has no {LANDMARK_DIR}; run `gpuau models verify {p}`")
    raise ModelStoreError("no OpenFace model folder found; run `gpuau models fetch --accept-license`")


def model_file(rel: str, models: "str | os.PathLike | None" = None) -> Path:
    """Path of one OpenFace file given its repository path, e.g. ``lib/local/LandmarkDetector/model/pdms/In-the-wild_aligned_PDM_68.txt``."""
    p = resolve_models_dir(models) / rel
    if not p.is_file():
        raise ModelStoreError(f"missing model file {p}; run `gpuau models fetch --accept-license`")
    return p
