"""Regenerate ``ccnf_openblas.npz``: OpenFace's ``CCNF_patch_expert::ResponseOpenBlas`` on the synthetic experts
of ``tests/synthetic_ccnf.py`` (no model data), computed by OpenFace's own compiled objects (built with ``-O3
-march=native`` against Debian 12's OpenCV 4.6, OpenBLAS 0.3.21 and glibc 2.36, the build that reproduces the
shared reference CSVs) on the project's 2-core x86-64 machine kind (AVX-512: OpenBLAS runs its SkylakeX
small-matrix kernel, glibc its FMA ``expf``).

Run from the repository root with OpenFace's sources at ``OPENFACE`` and its objects at ``OBJECTS`` (every
``.o`` of the FeatureExtraction build but FeatureExtraction's own)::

    PYTHONPATH=.:tests python tests/data/make_ccnf_openblas.py OPENFACE OBJECTS
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from openface_oracle import build_oracle
from synthetic_ccnf import CASES, expert_case

HERE = Path(__file__).resolve().parent


def main(openface: str, objects: str):
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_oracle("ccnf_openblas.cpp", openface, objects, Path(tmp, "oracle"))
        inp, res = Path(tmp, "in.bin"), Path(tmp, "out.bin")
        with open(inp, "wb") as f:
            np.array([len(CASES)], np.int32).tofile(f)
            for window, seed in CASES:
                area, weights, alphas, sigma = expert_case(window, seed)
                np.array([window], np.int32).tofile(f)
                for a in (area, weights, alphas, sigma):
                    a.tofile(f)
        subprocess.run([str(exe), str(inp), str(res)], check=True)
        flat = np.fromfile(res, np.float32)
    out, o = {}, 0
    for window, seed in CASES:
        out[f"w{window}_s{seed}"] = flat[o:o + window * window].reshape(window, window)
        o += window * window
    np.savez_compressed(HERE / "ccnf_openblas.npz", **out)
    print({k: v.shape for k, v in out.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
