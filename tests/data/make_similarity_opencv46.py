"""Regenerate ``similarity_opencv46.npz``: OpenFace's ``AlignShapesWithScale`` and the inverse
``Patch_experts::Response`` takes of it, computed by OpenFace's own header code built as OpenFace builds it
(``g++ -O3 -march=native``) against OpenCV 4.6 (Debian 12's ``libopencv-dev``, the OpenCV of the build that
reproduces the shared reference CSVs), on the project's 2-core x86-64 machine kind (AVX-512).

Run from the repository root with OpenFace's sources at ``OPENFACE`` (``lib/local/Utilities/include``)::

    GPUAU_MODELS=../shared/models/openface-2.2.0 PYTHONPATH=. python tests/data/make_similarity_opencv46.py OPENFACE

The pairs are those the pipeline forms: a tracked shape of default.wmv, changeLighting.wmv and
2015-10-15-15-14.avi (OpenFace's reference landmarks) against the PDM's reference shape of each patch scale
(68 points, the landmark fit), its rigid points against the AU alignment's (24 points); and random shapes,
mirrored ones (a reflection to remove), collinear ones (a zero singular value) and a single point.  They
are stored with the results, so the test needs neither the CSVs nor the PDM.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from gpuau.features.align import AU_SCALE, RIGID_INDICES
from gpuau.landmarks.pdm import PDM

SHARED = Path(__file__).resolve().parents[3] / "shared"
HERE = Path(__file__).resolve().parent


def pairs():
    pdm = PDM.load()
    rng = np.random.default_rng(46)
    out = []
    for name in ("default", "changeLighting", "2015-10-15-15-14"):
        df = pd.read_csv(SHARED / "reference" / "openface-clnf" / f"{name}.csv", skipinitialspace=True)
        for row in rng.choice(len(df), 12, replace=False):
            r = df.iloc[row]
            lm = np.stack([r[[f"{c}_{i}" for i in range(68)]].to_numpy(np.float32) for c in "xy"], axis=1)
            local = r[[f"p_{i}" for i in range(34)]].to_numpy(np.float32)
            for scale in (0.25, 0.35, 0.5):
                reference = pdm.calc_shape_2d(np.array([scale, 0, 0, 0, 0, 0], np.float32), local)
                out.append((lm, reference.astype(np.float32)))
            au_ref = (pdm.mean_shape.astype(np.float64) * AU_SCALE).astype(np.float32)[:136].reshape(2, 68).T
            out.append((lm[RIGID_INDICES], np.ascontiguousarray(au_ref[RIGID_INDICES])))
    for n in (68, 24, 5, 2):
        for _ in range(6):
            out.append(((rng.normal(size=(n, 2)) * rng.uniform(1, 300) + rng.uniform(-500, 500, 2)).astype(np.float32),
                        (rng.normal(size=(n, 2)) * rng.uniform(0.1, 50)).astype(np.float32)))
    base = out[0][0]
    out.append((base, base * np.float32([-1, 1])))  # mirrored: the rotation must not reflect
    line = np.stack([np.arange(68), 2 * np.arange(68)], axis=1).astype(np.float32)
    out.append((line, out[0][1]))  # collinear source: a zero singular value
    out.append((line, line[::-1].copy()))
    out.append((np.ones((1, 2), np.float32), np.full((1, 2), 3, np.float32)))
    return out


def main(openface: str):
    cases = pairs()
    with tempfile.TemporaryDirectory() as tmp:
        exe, inp, res = Path(tmp, "oracle"), Path(tmp, "in.bin"), Path(tmp, "out.bin")
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "opencv4"], capture_output=True, text=True,
                               check=True).stdout.split()
        subprocess.run(["g++", "-O3", "-march=native", "-std=c++14", "-w", "-DNDEBUG",
                        f"-I{openface}/lib/local/Utilities/include", str(HERE / "similarity_opencv46.cpp"),
                        "-o", str(exe), *flags], check=True)
        with open(inp, "wb") as f:
            np.int32(len(cases)).tofile(f)
            for src, dst in cases:
                np.int32(len(src)).tofile(f)
                np.ascontiguousarray(src, np.float32).tofile(f)
                np.ascontiguousarray(dst, np.float32).tofile(f)
        subprocess.run([str(exe), str(inp), str(res)], check=True)
        result = np.fromfile(res, np.float32).reshape(len(cases), 2, 2, 2)
    sizes = np.array([len(s) for s, _ in cases], np.int32)
    np.savez_compressed(HERE / "similarity_opencv46.npz", sizes=sizes,
                        src=np.concatenate([s for s, _ in cases]), dst=np.concatenate([d for _, d in cases]),
                        result=result)
    print(f"{len(cases)} pairs, {sizes.sum()} points")


if __name__ == "__main__":
    main(sys.argv[1])
