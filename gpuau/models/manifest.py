"""The OpenFace 2.2.0 files gpuau needs: where each comes from, its size and sha256, and what it is for.

The manifest (``openface-2.2.0.json``, package data) is generated from a complete OpenFace 2.2.0 model
folder by following the references in OpenFace's own configuration files, starting from the three
files FeatureExtraction loads with ``-mloc model/main_clnf_general.txt -aus`` and the static AU models'
list (``-au_static``, FaceLandmarkImg, FaceLandmarkVidMulti)::

    python -m gpuau.models.manifest /path/to/openface-2.2.0 > gpuau/models/openface-2.2.0.json

Paths are OpenFace repository paths (``lib/local/...``); a model folder holds them in that layout.
Importing this module loads nothing heavy (json and hashlib only).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

MANIFEST_FILE = Path(__file__).with_name("openface-2.2.0.json")

OPENFACE_TAG = "OpenFace_2.2.0"
BASE_URL = f"https://raw.githubusercontent.com/TadasBaltrusaitis/OpenFace/{OPENFACE_TAG}/"
LICENSE_URL = f"https://github.com/TadasBaltrusaitis/OpenFace/blob/{OPENFACE_TAG}/OpenFace-license.txt"
LICENSE_SUMMARY = (
    "OpenFace 2.2.0 and its model files are Copyright (C) Carnegie Mellon University and the University of "
    "Cambridge, licensed for ACADEMIC OR NON-PROFIT ORGANIZATION NONCOMMERCIAL RESEARCH USE ONLY. Commercial use "
    "needs a separate licence from the copyright holders. Publications using them must cite OpenFace 2.0 "
    "(Baltrusaitis et al., FG 2018). gpuau (MIT) does not redistribute these files: they are downloaded from "
    "OpenFace's GitHub repository at tag " + OPENFACE_TAG + "."
)

LANDMARK_MODEL = "lib/local/LandmarkDetector/model"
AU_PREDICTORS = "lib/local/FaceAnalyser/AU_predictors"

# What FeatureExtraction loads: the CLNF model named by -mloc, the MTCNN detector
# (LandmarkDetectorParameters.cpp default) and the dynamic AU models (FaceAnalyserParameters.cpp default);
# and the static AU models FeatureExtraction -au_static, FaceLandmarkImg and FaceLandmarkVidMulti load
# (FaceAnalyserParameters::OptimizeForImages).
ROOTS = (
    f"{LANDMARK_MODEL}/main_clnf_general.txt",
    f"{LANDMARK_MODEL}/mtcnn_detector/MTCNN_detector.txt",
    f"{AU_PREDICTORS}/main_dynamic_svms.txt",
    f"{AU_PREDICTORS}/main_static_svms.txt",
)

# Keys of OpenFace's configuration files whose value is a file path (relative to the configuring file);
# the files of keys in FOLLOW are configuration files themselves and are read in turn.
PATH_KEYS = frozenset({
    "LandmarkDetector", "LandmarkDetector_part", "FaceDetConversion", "DetectionValidator",  # main_clnf_*.txt
    "PDM", "Triangulations", "PatchesCCNF",  # clnf_*.txt
    "PNet", "RNet", "ONet",  # MTCNN_detector.txt
    "AUPredictor", "Triangulation",  # main_dynamic_svms.txt
})
FOLLOW = frozenset({"LandmarkDetector", "LandmarkDetector_part", "AUPredictor"})

# Groups in display order (pipeline order): (name, repository-path prefix, what the files are for).
# A file belongs to the group with the longest matching prefix.
GROUPS = (
    ("mtcnn", f"{LANDMARK_MODEL}/mtcnn_detector/", "MTCNN face detector (P-, R- and O-Net weights)"),
    ("clnf", f"{LANDMARK_MODEL}/",
     "CLNF 68-point landmark model: PDM, CCNF patch experts at 3 scales, triangulation, face-box conversion"),
    ("clnf-inner", f"{LANDMARK_MODEL}/model_inner/", "CLNF inner-face part model (51 points) refining the 68-point fit"),
    ("clnf-eyes", f"{LANDMARK_MODEL}/model_eye/", "CLNF eye part models (28 points per eye) refining the eye landmarks"),
    ("validator", f"{LANDMARK_MODEL}/detection_validation/", "detection validator CNN: landmark confidence and tracking failure"),
    ("au", f"{AU_PREDICTORS}/", "Action Unit SVR/SVM predictors with their PDM and triangulation (alignment mask)"),
)


@dataclass(frozen=True)
class ModelEntry:
    """One OpenFace file.

    Attributes
    ----------
    path : str
        OpenFace repository path, e.g. ``lib/local/LandmarkDetector/model/tris_68.txt``.
    group : str
        Which part of the pipeline uses it (a key of :attr:`Manifest.groups`).
    size : int
        Size in bytes.
    sha256 : str
        Hex digest of the file's bytes.
    url : str
        Official download address (OpenFace's GitHub repository at tag ``OpenFace_2.2.0``).
    """

    path: str
    group: str
    size: int
    sha256: str
    url: str


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest: licence information, groups and files."""

    name: str
    tag: str
    base_url: str
    license_url: str
    license_summary: str
    groups: dict  # name -> description, in display order
    files: tuple  # of ModelEntry, grouped in display order
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {e.path: e for e in self.files})

    def entry(self, path: str) -> "ModelEntry | None":
        """The entry of one repository path, or None when the manifest does not list it."""
        return self._index.get(path)

    def in_groups(self, groups=None) -> tuple:
        """Entries of the named groups (all when ``groups`` is None)."""
        if groups is None:
            return self.files
        unknown = set(groups) - set(self.groups)
        if unknown:
            raise ValueError(f"unknown model group(s) {sorted(unknown)}; known: {list(self.groups)}")
        return tuple(e for e in self.files if e.group in groups)


@lru_cache(maxsize=None)
def load_manifest(path: "str | os.PathLike" = MANIFEST_FILE) -> Manifest:
    """Read the manifest shipped with gpuau (or another one in the same format)."""
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    files = tuple(ModelEntry(**f) for f in d["files"])
    return Manifest(name=d["name"], tag=d["tag"], base_url=d["base_url"], license_url=d["license"]["url"],
                    license_summary=d["license"]["summary"], groups=dict(d["groups"]), files=files)


def sha256_file(path: "str | os.PathLike", chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def referenced_files(folder: "str | os.PathLike", roots=ROOTS) -> list:
    """Repository paths of ``roots`` and every file their configuration files name, recursively.

    A configuration line is ``KEY relative/path ...`` (KEY in :data:`PATH_KEYS`) or, in an AU predictor
    list such as ``AU_all_best.txt``, ``relative/path AUxx``; paths are relative to the configuring file.
    Reading order follows OpenFace's readers (CLNF::Read, FaceDetectorMTCNN::Read, FaceAnalyser's
    ReadAU); the result is sorted.
    """
    folder = Path(folder)
    seen, todo = set(), [(r, True) for r in roots]
    while todo:
        rel, is_config = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        if not is_config:
            continue
        base = rel.rpartition("/")[0]
        for line in (folder / rel).read_text(encoding="utf-8", errors="replace").splitlines():
            tokens = line.split()
            if len(tokens) >= 2 and tokens[0] in PATH_KEYS:
                todo.append((f"{base}/{tokens[1]}", tokens[0] in FOLLOW))
            elif len(tokens) == 2 and tokens[1].startswith("AU") and tokens[0].endswith(".dat"):
                todo.append((f"{base}/{tokens[0]}", False))
    missing = sorted(p for p in seen if not (folder / p).is_file())
    if missing:
        raise FileNotFoundError(f"{folder} lacks files its configuration names: {missing}")
    return sorted(seen)


def group_of(path: str) -> str:
    """Name of the :data:`GROUPS` entry a repository path belongs to (longest matching prefix)."""
    matches = [(len(prefix), name) for name, prefix, _ in GROUPS if path.startswith(prefix)]
    if not matches:
        raise ValueError(f"{path} belongs to no model group")
    return max(matches)[1]


def build_manifest(folder: "str | os.PathLike") -> dict:
    """The manifest (as JSON-ready dict) of a complete OpenFace 2.2.0 model folder in repository layout."""
    folder = Path(folder)
    order = {name: i for i, (name, _, _) in enumerate(GROUPS)}
    paths = sorted(referenced_files(folder), key=lambda p: (order[group_of(p)], p))
    return {
        "name": "openface-2.2.0",
        "tag": OPENFACE_TAG,
        "base_url": BASE_URL,
        "license": {"url": LICENSE_URL, "summary": LICENSE_SUMMARY},
        "groups": {name: text for name, _, text in GROUPS},
        "files": [
            {"path": p, "group": group_of(p), "size": (folder / p).stat().st_size,
             "sha256": sha256_file(folder / p), "url": BASE_URL + p}
            for p in paths
        ],
    }


def dumps(manifest: dict) -> str:
    """The manifest's canonical JSON text (what is committed)."""
    return json.dumps(manifest, indent=1) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m gpuau.models.manifest OPENFACE_MODEL_FOLDER > gpuau/models/openface-2.2.0.json")
    sys.stdout.write(dumps(build_manifest(sys.argv[1])))
