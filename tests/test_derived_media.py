"""The pipeline on clips the reference videos never show, against OpenFace's own output for them.

The reference videos track one face from the first frame to the last. These clips, made from them
(``tests/derived_media.py``), make OpenFace lose the face and find it again, find a face that appears only after a
while, follow a cut to another person, choose between two people, fit a mirrored face and a half-hidden one, track
three times the usual motion between frames, a face moving through a panning window and a small face crossing an HD
frame. OpenFace 2.0.2's
``FeatureExtraction`` (CLNF model, built on this project's machine kind, where it writes the shared reference CSVs
byte for byte) was run on their lossless files; ``tests/data/openface-derived`` keeps its frame, confidence,
success, 2D landmark and AU columns, and for ``gap`` its gaze and 2D eye-landmark columns too
(``python -m benchmarks.versus_openface`` redoes it given the binary).
"""
import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from derived_media import EXACT, clip_frames
from reference import compare, gaze_agreement, read_reference

DATA = Path(__file__).parent / "data" / "openface-derived"


@pytest.fixture(scope="module")
def analyzer():
    from gpuau import Analyzer

    return Analyzer(device="cpu")


@pytest.mark.parametrize("name", EXACT)
def test_derived_clip_matches_openface(name, analyzer, media_dir, shared, tmp_path):
    frames, fps = clip_frames(name, media_dir)
    ours = analyzer.analyze_frames(frames, fps=fps).to_csv(tmp_path / f"{name}.csv")
    theirs = tmp_path / f"{name}_openface.csv"
    theirs.write_bytes(gzip.decompress((DATA / f"{name}.csv.gz").read_bytes()))

    # the same frames tracked and lost: in "gap", OpenFace fails on the 20 grey frames and finds the face
    # again on the first frame after them (a lost track is re-detected every 2nd frame); in "late" the face
    # shows at frame 31 but is found at 36, and after 150 grey frames (tracking given up after 100 failures)
    # it is back at 331 and found at 337 (an untracked video is searched every 12th frame), and so in gpuau
    want, got = read_reference(theirs)["success"].to_numpy(), read_reference(ours)["success"].to_numpy()
    np.testing.assert_array_equal(got, want)
    if name == "gap":
        assert np.flatnonzero(want == 0).tolist() == list(range(120, 140))
    if name == "late":
        assert np.flatnonzero(want == 0).tolist() == list(range(36)) + list(range(181, 337))
    if name == "two":  # the widest face first (on the right), the other once it leaves, kept when it is back
        for table in (theirs, ours):
            right = read_reference(table)[[f"x_{k}" for k in range(68)]].to_numpy().mean(axis=1) > 640
            assert right.tolist() == [True] * 75 + [False] * 75, table

    res = compare(theirs, ours, shared)
    assert res["frames_candidate"] == res["frames_reference"] == len(frames)
    # measured 0.018-0.028 px mean, 0.031-0.045 p95 (the reference videos: 0.018-0.027 / 0.031-0.045); far's small
    # face 0.008 / 0.018
    assert res["landmark_mean_px"] < 0.05 and res["landmark_p95_px"] < 0.1
    # Pearson r over AUs that vary (OpenFace's intensities spread by 0.05 or more); one that stays near zero
    # (mirror's AU10, standard deviation 0.011) measures noise there, and is held to its mean error instead
    spread = read_reference(theirs)[list(res["au_r"])].std()
    varying = [r for au, r in res["au_r"].items() if not math.isnan(r) and spread[au] >= 0.05]
    flat = [res["au_mae"][au] for au in res["au_r"] if spread[au] < 0.05]
    # measured: AU r mean 0.996-0.999, min 0.989 over the varying AUs (the rounding floor of
    # benchmarks/bench_noise_floor.py is 0.978-0.990 on changeLighting, the clip mirror mirrors, and 0.958-0.970
    # on skip3), MAE <= 0.033; the near-constant AUs: MAE <= 0.0008
    assert np.mean(varying) >= 0.99 and min(varying) >= 0.975
    assert max(res["au_mae"].values()) <= 0.05 and max(flat, default=0) <= 0.01
    assert res["au_c_agreement_mean"] >= 0.985

    gaze = gaze_agreement(theirs, ours)
    if gaze is not None:  # gap's file keeps OpenFace's gaze and 2D eye-landmark columns too (written with -gaze)
        # measured: gaze vectors 0.0004 mean abs, eye landmarks 0.015 px
        assert gaze["gaze_mae"] < 0.002 and gaze["eye_px_mean"] < 0.05, gaze
        # on the frames where the face is lost both write zero gaze and the eye models' last fit
        lost = want == 0
        t, o = read_reference(theirs)[lost], read_reference(ours)[lost]
        assert not o[[c for c in o if c.startswith("gaze_")]].to_numpy().any()
        eyes = [c for c in t if c.startswith(("eye_lmk_x_", "eye_lmk_y_"))]
        assert np.abs(o[eyes].to_numpy() - t[eyes].to_numpy()).max() <= 0.3
