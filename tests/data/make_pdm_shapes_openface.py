"""Regenerate ``pdm_shapes_openface.npz``: OpenFace's ``PDM::CalcShape3D`` and ``PDM::CalcShape2D``, computed by
OpenFace's own compiled objects (built with ``-O3 -march=native`` against Debian 12's OpenCV 4.6 and OpenBLAS
0.3.21, the build that reproduces the shared reference CSVs), on the project's 2-core x86-64 machine kind
(AVX-512: OpenBLAS runs its Cooperlake small-matrix kernel for CalcShape3D's one-row ``sgemm``).

Run from the repository root with OpenFace's sources at ``OPENFACE`` and its objects at ``OBJECTS`` (every
``.o`` of the FeatureExtraction build but FeatureExtraction's own)::

    GPUAU_MODELS=../shared/models/openface-2.2.0 PYTHONPATH=. \\
        python tests/data/make_pdm_shapes_openface.py OPENFACE OBJECTS

Parameters: OpenFace's fits of the three reference videos (main PDM, 34 modes) and random ones, for the main,
inner-face (32 modes) and eye (10 modes) PDMs; the shapes are stored with them.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from gpuau.landmarks.pdm import MAIN_PDM, PDM
from gpuau.models.store import resolve_models_dir
from openface_oracle import build_oracle

SHARED = Path(__file__).resolve().parents[3] / "shared"
HERE = Path(__file__).resolve().parent
PDMS = {"main": MAIN_PDM, "inner": "lib/local/LandmarkDetector/model/model_inner/pdms/pdm_51_inner.txt",
        "eye": "lib/local/LandmarkDetector/model/model_eye/pdms/pdm_28_l_eye_3D_closed.txt"}


def parameters(name: str, modes: int, rng) -> "tuple[np.ndarray, np.ndarray]":
    g = np.column_stack([rng.uniform(0.5, 4, 24), rng.uniform(-0.6, 0.6, (24, 3)), rng.uniform(50, 600, (24, 2))])
    p = rng.normal(0, 8, (24, modes))
    if name == "main":
        for video in ("default", "changeLighting", "2015-10-15-15-14"):
            df = pd.read_csv(SHARED / "reference" / "openface-clnf" / f"{video}.csv", skipinitialspace=True)
            rows = rng.choice(len(df), 8, replace=False)
            g = np.vstack([g, df.loc[rows, ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"]].to_numpy()])
            p = np.vstack([p, df.loc[rows, [f"p_{i}" for i in range(34)]].to_numpy()])
    return g.astype(np.float32), p.astype(np.float32)


def main(openface: str, objects: str):
    models = resolve_models_dir()
    rng = np.random.default_rng(68)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_oracle("pdm_shapes_openface.cpp", openface, objects, Path(tmp, "oracle"))
        for name, rel in PDMS.items():
            pdm = PDM.load(rel, models=models)
            g, p = parameters(name, pdm.n_modes, rng)
            inp, res = Path(tmp, "in.bin"), Path(tmp, "out.bin")
            with open(inp, "wb") as f:
                np.array([len(g), pdm.n_modes], np.int32).tofile(f)
                for gi, pi in zip(g, p):
                    gi.tofile(f)
                    pi.tofile(f)
            subprocess.run([str(exe), str(models / rel), str(inp), str(res)], check=True)
            n = pdm.n_points
            shapes = np.fromfile(res, np.float32).reshape(len(g), 5 * n)
            out.update({f"{name}/params_global": g, f"{name}/params_local": p,
                        f"{name}/shape_2d": shapes[:, :2 * n].reshape(-1, 2, n).transpose(0, 2, 1),
                        f"{name}/shape_3d": shapes[:, 2 * n:].reshape(-1, 3, n).transpose(0, 2, 1)})
    np.savez_compressed(HERE / "pdm_shapes_openface.npz", **out)
    print({k: v.shape for k, v in out.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
