"""OpenFace CSV / Parquet output: FeatureExtraction's header, order and number formats."""
from __future__ import annotations

import filecmp

import numpy as np
import pytest

from gpuau.io import openface_csv
from gpuau.io import OpenFaceCSVWriter, openface_columns, read_openface_csv, write_openface_csv, write_openface_parquet

REFERENCES = ["default.csv", "2015-10-15-15-14.csv", "image_sequence.csv", "images/sample6.csv"]


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("name", REFERENCES)
def test_reference_files_round_trip_byte_for_byte(name, chunk, reference_dir, tmp_path, monkeypatch):
    """Whole, and formatted 7 rows at a time (a long table is formatted in chunks: gpuau.io.openface_csv.FORMAT_ROWS)."""
    if chunk:
        monkeypatch.setattr(openface_csv, "FORMAT_ROWS", chunk)
    ref = reference_dir / name
    table = read_openface_csv(ref)
    sequence = "frame" in table
    out = write_openface_csv(tmp_path / "out.csv", table, sequence=sequence, postprocessed=sequence)
    assert filecmp.cmp(out, ref, shallow=False)


def test_multi_face_has_online_presence_format(reference_dir, tmp_path):
    # FaceLandmarkVidMulti does not post-process: AU presence keeps 1 decimal
    ref = reference_dir / "multi_face.csv"
    out = write_openface_csv(tmp_path / "m.csv", read_openface_csv(ref), postprocessed=False)
    assert filecmp.cmp(out, ref, shallow=False)


def test_feature_extraction_columns_without_gaze():
    cols = openface_columns([f"AU{i:02d}" for i in (2, 1)], ["AU28", "AU01"])
    assert cols[:11] == ["frame", "face_id", "timestamp", "confidence", "success",
                         "pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
    assert cols[11] == "x_0" and cols[11 + 68] == "y_0" and cols[11 + 136] == "X_0" and cols[11 + 340] == "p_scale"
    assert cols[-4:] == ["AU01_r", "AU02_r", "AU01_c", "AU28_c"] and len(cols) == 5 + 6 + 136 + 204 + 40 + 4


def test_streaming_writer_keeps_failed_rows_and_is_atomic(tmp_path):
    cols = openface_columns(["AU01"], ["AU01"], pose=False, landmarks_2d=False, landmarks_3d=False, params=False)
    path = tmp_path / "s.csv"
    w = OpenFaceCSVWriter(path, cols)
    w.write_rows({"frame": [1, 2], "face_id": [0, 0], "timestamp": [0.0, 0.0333333], "confidence": [0.98, -0.5], "success": [1, 0]})
    w.write_rows({"frame": [3], "face_id": [0], "timestamp": [0.0666667], "confidence": [0.975], "success": [1]})
    assert not path.exists()  # nothing visible before close
    w.close({"AU01_r": [1.234, 0.0, 5.0], "AU01_c": [1.0, 0.0, 1.0]})
    assert path.read_text().splitlines() == [
        "frame, face_id, timestamp, confidence, success, AU01_r, AU01_c",
        "1, 0, 0.000, 0.98, 1, 1.23, 1.00",
        "2, 0, 0.033, -0.50, 0, 0.00, 0.00",
        "3, 0, 0.067, 0.97, 1, 5.00, 1.00",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]  # temporary files removed
    w = OpenFaceCSVWriter(path, cols)
    w.write_rows({"frame": [9], "face_id": [0], "timestamp": [0.3], "confidence": [0.9], "success": [1]})
    w.abort()
    assert path.read_text().splitlines()[1].startswith("1, 0") and len(list(tmp_path.iterdir())) == 1
    w = OpenFaceCSVWriter(path, cols)
    with pytest.raises(ValueError, match="'success' has 1 values, 'frame' 2"):
        w.write_rows({"frame": [1, 2], "face_id": [0, 0], "timestamp": [0, 0.1], "confidence": [1, 1], "success": [1]})
    w.abort()


def test_a_close_that_fails_midway_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    """The final CSV (header, rows and the AU columns formatted at close) is written to a temporary file and renamed:
    a full disk while it is written leaves the file that was there and no temporary, never a cut one that a resumed
    run would take for finished."""
    import errno

    cols = openface_columns(["AU01"], ["AU01"], pose=False, landmarks_2d=False, landmarks_3d=False, params=False)
    path = tmp_path / "s.csv"
    path.write_text("previous\n")
    w = OpenFaceCSVWriter(path, cols)
    w.write_rows({"frame": [1, 2, 3], "face_id": [0] * 3, "timestamp": [0, 0.1, 0.2], "confidence": [0.9] * 3,
                  "success": [1] * 3})
    monkeypatch.setattr(openface_csv, "FORMAT_ROWS", 1)
    real, calls = openface_csv._format_rows, []

    def full_disk_at_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(openface_csv, "_format_rows", full_disk_at_the_second_chunk)
    with pytest.raises(OSError):
        w.close({"AU01_r": [1.0, 2.0, 3.0], "AU01_c": [1.0, 0.0, 1.0]})
    assert path.read_text() == "previous\n" and [p.name for p in tmp_path.iterdir()] == ["s.csv"]


def test_success_is_detect_landmarks_in_videos_return_not_the_validators():
    """A first detection whose fit the validator rejects is written success 1 (FeatureExtraction writes
    DetectLandmarksInVideo's return value, true for an initial detection whatever the validator says) with the
    validator's confidence."""
    from gpuau.landmarks.tracker import LandmarkResult
    from gpuau.pipeline import base_columns, landmark_row

    r = LandmarkResult(success=True, detection_success=False, confidence=0.1, landmarks=np.zeros((68, 2), np.float32),
                       params_global=np.zeros(6, np.float32), params_local=np.zeros(34, np.float32),
                       landmarks_3d=np.zeros((68, 3), np.float32), pose=np.zeros(6, np.float32))
    row = dict(zip(base_columns(), landmark_row(1, 0.0, r)))
    assert row["success"] == 1 and row["confidence"] == pytest.approx(0.1)


def test_parquet_has_the_same_columns(reference_dir, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    table = read_openface_csv(reference_dir / "default.csv")
    out = write_openface_parquet(tmp_path / "d.parquet", table)
    t = pq.read_table(out)
    assert t.column_names == list(table)
    assert t.schema.field("frame").type == "int32"
    np.testing.assert_array_equal(t.column("AU12_r").to_numpy(), table["AU12_r"])


def test_file_column_is_last_quoted_when_needed_and_round_trips(reference_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(openface_csv, "FORMAT_ROWS", 3)  # text cells formatted in chunks too
    pd = pytest.importorskip("pandas")
    pq = pytest.importorskip("pyarrow.parquet")
    table = read_openface_csv(reference_dir / "image_sequence.csv")
    names = [f"{i:03d}.jpg" for i in range(1, 31)]
    names[1:4] = ["a, b.jpg", 'say "hi".png', " lead.png"]
    table["file"] = np.array(names)
    out = write_openface_csv(tmp_path / "seq.csv", table)
    lines = out.read_text().splitlines()
    assert lines[0].endswith(", AU45_c, file") and lines[1].endswith(", 001.jpg")
    assert lines[2].endswith(', "a, b.jpg"') and lines[3].endswith(', "say ""hi"".png"')
    assert lines[4].endswith(', " lead.png"')
    back = read_openface_csv(out)
    assert list(back) == list(table) and list(back["file"]) == names
    ref = (reference_dir / "image_sequence.csv").read_text().splitlines()
    assert [line.rsplit(", ", 1)[0] for line in lines[:2]] == [ref[0], ref[1]]  # OpenFace's part unchanged
    frame = pd.read_csv(out, skipinitialspace=True)
    assert list(frame["file"]) == names and list(frame.columns[:-1]) == ref[0].split(", ")
    t = pq.read_table(write_openface_parquet(tmp_path / "seq.parquet", table))
    assert t.column_names[-1] == "file" and t.schema.field("file").type == "string"
    assert t.column("file").to_pylist() == names


def test_streaming_writer_text_column_after_the_aus(tmp_path):
    cols = openface_columns(["AU01"], [], pose=False, landmarks_2d=False, landmarks_3d=False, params=False, file=True)
    assert cols[-2:] == ["AU01_r", "file"]
    w = OpenFaceCSVWriter(tmp_path / "t.csv", cols)
    assert w.base_columns == ["frame", "face_id", "timestamp", "confidence", "success", "file"]
    w.write_rows({"frame": [1, 2], "face_id": [0, 0], "timestamp": [0, 0], "confidence": [0.9, 0.8], "success": [1, 1],
                  "file": ["x.png", "two\nlines.png"]})
    out = w.close({"AU01_r": [0.5, 1.5]})
    assert read_openface_csv(out)["file"].tolist() == ["x.png", "two\nlines.png"]
    assert out.read_text().startswith("frame, face_id, timestamp, confidence, success, AU01_r, file\n"
                                      "1, 0, 0.000, 0.90, 1, 0.50, x.png\n")
    with pytest.raises(ValueError, match="text columns"):
        OpenFaceCSVWriter(tmp_path / "u.csv", ["frame", "file", "AU01_r"])


@pytest.mark.parametrize("files", [None, [f"{i:03d}.jpg" for i in range(1, 289)]])
def test_row_writer_parquet_goes_through_disk_in_row_groups(files, reference_dir, tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    from gpuau.io import RowWriter, openface_csv

    monkeypatch.setattr(openface_csv, "PARQUET_ROW_GROUP", 100)
    table = read_openface_csv(reference_dir / "default.csv")
    names = openface_columns()
    aus = {c: table[c] for c in table if c.startswith("AU")}
    with RowWriter(tmp_path / "d.parquet", "parquet", (["AU01"], ["AU01"]), chunk=50, files=files) as w:
        for row in np.column_stack([table[c] for c in names]):
            w.add(row)
        spilled = [p for p in tmp_path.iterdir() if p.name.startswith(".d.parquet.")]
        assert len(spilled) == 1 and spilled[0].stat().st_size == 250 * len(names) * 8  # 5 chunks so far, not 288 rows
        assert w.close(aus) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]  # the row store is removed
    t = pq.read_table(tmp_path / "d.parquet")
    assert pq.ParquetFile(tmp_path / "d.parquet").metadata.num_row_groups == 3
    expected = {c: table[c] for c in names} | aus | ({} if files is None else {"file": np.array(files)})
    assert t.column_names == list(expected)
    for c, v in expected.items():
        np.testing.assert_array_equal(t.column(c).to_numpy(zero_copy_only=False), v, err_msg=c)
    with RowWriter(tmp_path / "e.parquet", "parquet", ([], [])) as w:
        w.add(np.zeros(len(names)))
        w.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]


def test_columns_of_other_lengths_are_refused_past_the_first_chunk_too(tmp_path):
    """The rows are formatted 4096 at a time: a column longer than the first was cut to its length unsaid."""
    with pytest.raises(ValueError, match="column 'timestamp' has 5000 values, 'frame' 4096: one per row"):
        write_openface_csv(tmp_path / "uneven.csv", {"frame": np.arange(4096), "timestamp": np.zeros(5000)})
    assert not list(tmp_path.iterdir())  # nothing left, no temporary


def test_header_only_file_reads_as_zero_rows(tmp_path):
    path = write_openface_csv(tmp_path / "none.csv", {"face": np.zeros(0), "confidence": np.zeros(0)}, sequence=False)
    assert path.read_text() == "face, confidence\n"
    table = read_openface_csv(path)
    assert list(table) == ["face", "confidence"] and table["face"].shape == (0,)


def test_a_file_that_is_not_an_openface_csv_is_one_error_naming_it(tmp_path):
    """An empty file stopped `gpuau plot` with a StopIteration traceback; cells that are not numbers under the header
    gave NumPy's message without the file's name."""
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=f"^{empty}: an empty file, not an OpenFace CSV$"):
        read_openface_csv(empty)
    for name, text in (("words.csv", "frame, AU01_r\n1, high\n"), ("ragged.csv", "frame, file, AU01_r\n1, a.jpg\n")):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError, match=f"^{path}: not an OpenFace CSV \\("):
            read_openface_csv(path)
