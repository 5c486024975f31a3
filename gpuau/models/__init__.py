"""OpenFace model files: where they are (store), how they are fetched and verified, and parsers
that turn each file format into plain NumPy arrays."""
from gpuau.models.store import ModelStoreError, model_file, resolve_models_dir

__all__ = ["ModelStoreError", "model_file", "resolve_models_dir"]
