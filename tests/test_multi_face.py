"""Several faces per video as OpenFace's FaceLandmarkVidMulti tracks them: the overlap rule, and the first
frames of multi_face.avi against FaceLandmarkVidMulti's reference rows (matched on frame and face_id): their values
over the first 30, their rows over the first 400 (a face lost and found again, a fourth face)."""
from itertools import islice

import numpy as np
import pytest

from gpuau.io.openface_csv import read_openface_csv
from gpuau.landmarks.multi import DETECT_EVERY, MAX_FAILURES, MultiFaceTracker, landmark_box, non_overlapping
from gpuau.pipeline import Analyzer, base_columns
from gpuau.video import open_source, to_gray8
from media import read_frames
from reference import landmarks_2d, read_reference

FRAMES = 30
ROW_FRAMES = 400


def test_overlap_uses_openfaces_union():
    model = landmark_box(np.array([[0, 0], [10, 10], [5, 3]], np.float32))
    np.testing.assert_array_equal(model, [0, 0, 10, 10])
    boxes = np.array([
        [0, 0, 10, 10],   # the same box: tracked already
        [4, 0, 10, 10],   # IoU 0.43, but OpenFace's ratio 60 / (100 + 100 - 2 * 60) = 0.75: tracked already
        [5, 0, 10, 10],   # ratio 50 / 100 = 0.5, not above the threshold: a new face
        [30, 30, 10, 10],  # disjoint
    ], np.float32)
    np.testing.assert_array_equal(non_overlapping(boxes, [model]), [2, 3])
    # A free slot (all landmarks 0) blocks nothing.
    free = landmark_box(np.zeros((68, 2), np.float32))
    np.testing.assert_array_equal(non_overlapping(boxes, [free, free]), [0, 1, 2, 3])
    assert non_overlapping(np.zeros((0, 4)), [model]).size == 0


@pytest.fixture(scope="module")
def first_rows(models_dir, media_dir):
    """Our rows and static AUs of the first ROW_FRAMES frames of multi_face.avi."""
    source = open_source(media_dir / "multi_face.avi")
    frames = (f.image for f in islice(source, ROW_FRAMES))
    res = Analyzer("cpu", models=models_dir).analyze_frames(frames, fps=source.fps, multi_face=True)
    assert res.frames_decoded == ROW_FRAMES and not res.postprocessed
    return res.columns


@pytest.fixture(scope="module")
def first_frames(first_rows):
    """Our rows and static AUs of the first FRAMES frames of multi_face.avi."""
    return {c: v[first_rows["frame"] <= FRAMES] for c, v in first_rows.items()}


def test_rows_match_facelandmarkvidmulti_as_faces_are_lost_and_found(first_rows, reference_dir):
    """Face 2 fails on frames 262-267: its slot is freed after the sixth failure in a row, and it has no row until the
    detection at frame 273 (every 8th frame) starts it again; a fourth face, found at frame 393 while three are
    tracked, takes the fourth of FaceLandmarkVidMulti's four slots."""
    ref = read_openface_csv(reference_dir / "multi_face.csv")
    keep = ref["frame"] <= ROW_FRAMES
    for column in ("frame", "face_id", "success"):
        np.testing.assert_array_equal(first_rows[column], ref[column][keep])
    face2 = first_rows["frame"][first_rows["face_id"] == 2]
    assert 267 in face2 and not set(range(268, 273)) & set(face2) and 273 in face2
    assert first_rows["frame"][first_rows["face_id"] == 3].min() == 393


def test_first_frames_match_facelandmarkvidmulti(first_frames, reference_dir):
    ref = read_openface_csv(reference_dir / "multi_face.csv")
    keep = ref["frame"] <= FRAMES
    ref = {c: v[keep] for c, v in ref.items()}
    ours = first_frames
    assert list(ours)[:len(base_columns(gaze=True))] == base_columns(gaze=True)
    # The same (frame, face_id) rows in the same order: three faces from the first frame on.
    np.testing.assert_array_equal(ours["frame"], ref["frame"])
    np.testing.assert_array_equal(ours["face_id"], ref["face_id"])
    assert set(ours["face_id"]) == {0, 1, 2}
    np.testing.assert_array_equal(ours["success"], ref["success"])
    assert 0 < ref["success"].sum() < len(ref["success"])  # slot 0's first fit is not validated
    # The validator's certainty comes in steps of 0.1: a fit a hair away can land one step off.
    assert np.mean(np.abs(ours["confidence"] - ref["confidence"]) < 6e-3) > 0.95
    np.testing.assert_allclose(ours["timestamp"], ref["timestamp"], atol=6e-4)
    err = np.mean([np.hypot(ours[f"x_{i}"] - ref[f"x_{i}"], ours[f"y_{i}"] - ref[f"y_{i}"]) for i in range(68)], axis=0)
    assert err.mean() < 0.06 and err.max() < 0.5, (err.mean(), err.max())
    # The gaze of validated fits only, zeros elsewhere; the eyes' landmarks on every row (the eye models' state).
    gaze = np.stack([ours[f"gaze_{e}_{a}"] for e in "01" for a in "xyz"])
    assert not gaze[:, ours["success"] == 0].any() and gaze[:, ours["success"] == 1].all()
    ref_gaze = np.stack([ref[f"gaze_{e}_{a}"] for e in "01" for a in "xyz"])
    assert np.abs(gaze - ref_gaze).max() < 0.01
    eyes = np.mean([np.hypot(ours[f"eye_lmk_x_{i}"] - ref[f"eye_lmk_x_{i}"],
                             ours[f"eye_lmk_y_{i}"] - ref[f"eye_lmk_y_{i}"]) for i in range(56)], axis=0)
    assert eyes.mean() < 0.06 and eyes.max() < 0.5, (eyes.mean(), eyes.max())
    # Static AUs on every row, failed fits included (FaceLandmarkVidMulti predicts them for every active slot).
    au_r = [c for c in ref if c.endswith("_r")]
    au_c = [c for c in ref if c.endswith("_c")]
    mae = np.mean([np.abs(ours[c] - ref[c]).mean() for c in au_r])
    r = np.nanmean([np.corrcoef(ours[c], ref[c])[0, 1] for c in au_r if ref[c].std() > 0.05])
    agree = np.mean([(ours[c] == ref[c]).mean() for c in au_c])
    assert mae < 0.05 and r > 0.95 and agree > 0.95, (mae, r, agree)


def test_cli_multi_face_on_an_image_folder(first_frames, media_dir, reference_dir, tmp_path):
    import cv2

    from gpuau.cli import main

    folder = tmp_path / "clip"
    folder.mkdir()
    for f in islice(open_source(media_dir / "multi_face.avi"), 10):
        cv2.imwrite(str(folder / f"{f.index + 1:03d}.png"), f.image)  # lossless: the same pixels
    out = tmp_path / "out"
    assert main(["analyze", str(folder), "-o", str(out), "--multi-face", "--device", "cpu", "-q"]) == 0
    lines = (out / "clip.csv").read_text().splitlines()
    head = [h.strip() for h in lines[0].split(",")]
    ref_head = [h.strip() for h in (reference_dir / "multi_face.csv").open().readline().split(",")]
    assert head == ref_head + ["file"]  # gpuau's, last
    row = dict(zip(head, (v.strip() for v in lines[1].split(","))))
    assert row["file"] == "001.png" and lines[-1].endswith(", 010.png")
    # FaceLandmarkVidMulti does no AU post-processing: presence keeps RecorderCSV's single decimal.
    assert len(row["AU01_r"].split(".")[1]) == 2 and len(row["AU01_c"].split(".")[1]) == 1
    ours = read_openface_csv(out / "clip.csv")
    n = int(np.sum(first_frames["frame"] <= 10))
    assert len(ours["frame"]) == n
    for c in ("frame", "face_id", "success", "x_0", "y_36", "AU12_r", "AU25_c"):
        np.testing.assert_allclose(ours[c], first_frames[c][:n], atol=0.051, err_msg=c)  # as written (0.1 px)
    assert np.all(ours["timestamp"] == 0)  # image folders have no clock, as in OpenFace


def test_a_face_back_where_a_freed_slot_lost_it_is_found_again(clnf, media_dir, reference_dir):
    """A slot freed after MAX_FAILURES failures is reset (``CLNF::Reset``: its landmarks set to 0), so its box blocks
    no later detection: a face that comes back where it was lost is found again at the next detection frame."""
    image = read_frames(media_dir / "default.wmv", 1)[0]
    gray = to_gray8(image)
    lm = landmarks_2d(read_reference(reference_dir / "default.csv", nrows=1))[0]
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    box = np.array([[lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]], np.float32)  # where the face is
    detections = []

    def detect_all(img):
        detections.append(len(detections))
        return box

    mt = MultiFaceTracker(clnf, detect_all=detect_all, validate=lambda *a: 1.0)
    assert [k for k, _ in mt.track(image, gray)] == [0]  # frame 0: the face starts in slot 0
    mt.slots[0].failures_in_a_row = MAX_FAILURES + 1  # lost: freed at the next frame (its box still blocks that one's
    mt.frame_count = DETECT_EVERY                     # detections, in OpenFace too, as its reset comes after them)
    assert mt.track(image, gray) == [] and not any(mt.active)
    assert not mt.slots[0].landmarks.any()  # CLNF::Reset: no box left
    mt.frame_count = 2 * DETECT_EVERY  # the next detection frame: the face is where it was lost
    assert [k for k, _ in mt.track(image, gray)] == [0] and len(detections) == 3
