"""CLNF facial landmarks: point distribution model (PDM), CCNF patch experts, NU-RLMS fitting,
hierarchical part models and per-frame tracking (port of OpenFace's LandmarkDetector)."""
from gpuau.landmarks.pdm import PDM

__all__ = ["PDM"]
