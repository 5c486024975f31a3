"""Write ``openface_hogalign.npz``: the start of what OpenFace's FeatureExtraction writes for default.wmv with
``-hogalign -simalign`` (CLNF model), for ``tests/test_end_to_end.py``.

Kept: the first 6 records of ``default.hog`` (their 16-byte headers and 4464 values) and the first 2 aligned faces
of ``default_aligned/`` (the BMP files' bytes).  Needs OpenFace's ``FeatureExtraction`` (the build that writes the
shared reference CSVs) and the shared media:

    python tests/data/make_openface_hogalign.py /path/to/OpenFace/build/bin/FeatureExtraction
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MEDIA = HERE.parents[2] / "shared" / "media"
RECORDS, FACES = 6, 2


def main(feature_extraction: str) -> None:
    exe = Path(feature_extraction).resolve()
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([str(exe), "-f", str(MEDIA / "default.wmv"), "-out_dir", out, "-mloc",
                        "model/main_clnf_general.txt", "-hogalign", "-simalign"], cwd=exe.parent, check=True,
                       capture_output=True)
        raw = np.fromfile(Path(out) / "default.hog", np.uint8).reshape(-1, 16 + 4 * 4464)[:RECORDS]
        bmps = [np.fromfile(Path(out) / "default_aligned" / f"frame_det_00_{k:06d}.bmp", np.uint8)
                for k in range(1, FACES + 1)]
    np.savez_compressed(HERE / "openface_hogalign.npz", headers=raw[:, :16], values=raw[:, 16:].copy().view(np.float32),
                        bmps=np.stack(bmps))


if __name__ == "__main__":
    main(sys.argv[1])
