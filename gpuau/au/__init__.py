"""Action Units: linear SVR/SVM predictors, person-specific running medians, offline post-processing."""
from gpuau.au.analyzer import AUAnalyzer, predict_static_aus

__all__ = ["AUAnalyzer", "predict_static_aus"]
