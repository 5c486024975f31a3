"""CLNF facial landmarks: point distribution model (PDM), CCNF patch experts, NU-RLMS fitting,
hierarchical part models and per-frame tracking (port of OpenFace's LandmarkDetector)."""
from gpuau.landmarks.clnf import (CLNF, CLNFModel, FitParameters, FitResult, detect_landmarks, detect_landmarks_batch,
                                  fit, fit_batch)
from gpuau.landmarks.pdm import PDM
from gpuau.landmarks.tracker import FaceTracker, LandmarkResult, fit_from_box

__all__ = ["CLNF", "CLNFModel", "FaceTracker", "FitParameters", "FitResult", "LandmarkResult", "PDM",
           "detect_landmarks", "detect_landmarks_batch", "fit", "fit_batch", "fit_from_box"]
