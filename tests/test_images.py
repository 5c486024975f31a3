"""Single images as OpenFace's FaceLandmarkImg analyses them: every face, static AUs, ``face, confidence`` rows,
against the reference CSVs of FaceLandmarkImg (faces matched by landmark position)."""
import cv2
import numpy as np
import pytest

from gpuau.cli import main
from gpuau.io.openface_csv import read_openface_csv
from gpuau.pipeline import Analyzer, image_columns


@pytest.fixture(scope="module")
def analyzer(models_dir):
    return Analyzer("cpu", models=models_dir)


def _landmarks(cols) -> np.ndarray:
    return np.stack([np.stack([cols[f"x_{i}"], cols[f"y_{i}"]], axis=1) for i in range(68)], axis=1)


def _match(ref, ours):
    """For each of our faces: (index of the nearest reference face, mean landmark distance in px)."""
    r, o = _landmarks(ref), _landmarks(ours)
    err = np.linalg.norm(r[None] - o[:, None], axis=3).mean(axis=2)  # (ours, ref)
    j = err.argmin(axis=1)
    return j, err[np.arange(len(o)), j]


@pytest.mark.parametrize("name, faces", [("sample2", 3), ("sample6", 12)])
def test_every_face_matches_facelandmarkimg(analyzer, media_dir, reference_dir, name, faces):
    ref = read_openface_csv(reference_dir / "images" / f"{name}.csv")
    res = analyzer.analyze_image(media_dir / f"{name}.jpg")
    ours = res.columns
    assert len(res) == faces == len(ref["face"])
    np.testing.assert_array_equal(ours["face"], np.arange(faces))
    j, err = _match(ref, ours)
    assert sorted(j) == list(range(faces))
    # OpenFace numbers its faces in MTCNN's order, as gpuau does.
    np.testing.assert_array_equal(j, np.arange(faces))
    # The reference has 0.1 px landmarks: 0.04 px is the rounding; one unvalidated face of sample2 is 0.9 px off.
    assert np.median(err) < 0.1 and err.max() < 1.0
    np.testing.assert_allclose(ours["confidence"], ref["confidence"], atol=6e-4)
    ok = err < 0.1
    au_r = [c for c in ref if c.endswith("_r")]
    au_c = [c for c in ref if c.endswith("_c")]
    mae = np.mean([np.abs(ours[c][ok] - ref[c][ok]).mean() for c in au_r])
    agree = np.mean([(ours[c][ok] == ref[c][ok]).mean() for c in au_c])
    assert mae < 0.05 and agree > 0.95, (mae, agree)
    # FaceLandmarkImg estimates every face's gaze: 0.003 at most on the faces that fit alike
    gaze = np.stack([ours[f"gaze_{e}_{a}"][ok] - ref[f"gaze_{e}_{a}"][ok] for e in "01" for a in "xyz"])
    assert np.abs(gaze).max() < 0.01, np.abs(gaze).max()


def test_cli_writes_facelandmarkimg_csv(media_dir, reference_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(out), "--device", "cpu", "-q"]) == 0
    lines = (out / "sample1.csv").read_text().splitlines()
    ref_lines = (reference_dir / "images" / "sample1.csv").read_text().splitlines()
    head = [h.strip() for h in lines[0].split(",")]
    ref_head = [h.strip() for h in ref_lines[0].split(",")]
    assert head == ref_head  # FaceLandmarkImg's columns in its order, gaze and eye landmarks included
    assert head[:len(image_columns(gaze=True))] == image_columns(gaze=True)
    assert len(lines) == len(ref_lines) == 2
    row = dict(zip(head, (v.strip() for v in lines[1].split(","))))
    ref_row = dict(zip(ref_head, (v.strip() for v in ref_lines[1].split(","))))
    assert row["face"] == "0" and row["confidence"] == ref_row["confidence"] == "0.983"
    # FaceLandmarkImg's formats: AU intensities with 2 decimals, presence with 1 (no post-processing).
    assert len(row["AU01_r"].split(".")[1]) == 2 and len(row["AU01_c"].split(".")[1]) == 1
    ours, ref = read_openface_csv(out / "sample1.csv"), read_openface_csv(reference_dir / "images" / "sample1.csv")
    assert np.abs(_landmarks(ours) - _landmarks(ref)).max() <= 0.1 + 1e-9


def test_array_input_equals_file_input(analyzer, media_dir):
    from_file = analyzer.analyze_image(media_dir / "sample1.jpg").columns
    image = cv2.imread(str(media_dir / "sample1.jpg"))
    for img in (image, image.astype(np.uint16) << 8):  # 16-bit is scaled back to the same 8-bit image
        from_array = analyzer.analyze_image(img).columns
        assert list(from_array) == list(from_file)
        for c in from_file:
            np.testing.assert_array_equal(from_array[c], from_file[c], err_msg=c)


def test_image_without_a_face(analyzer, tmp_path, capsys):
    blank = np.full((240, 320, 3), 128, np.uint8)
    res = analyzer.analyze_image(blank)
    assert len(res) == 0 and res.faces_found == 0
    assert res.warnings == ["<image>: no face found"]
    path = tmp_path / "blank.png"
    cv2.imwrite(str(path), blank)
    out = tmp_path / "out"
    assert main(["analyze", str(path), "-o", str(out), "--device", "cpu", "-q"]) == 0
    lines = (out / "blank.csv").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("face, confidence, gaze_0_x")
