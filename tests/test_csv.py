"""OpenFace CSV / Parquet output: FeatureExtraction's header, order and number formats."""
from __future__ import annotations

import filecmp

import numpy as np
import pytest

from gpuau.io import OpenFaceCSVWriter, openface_columns, read_openface_csv, write_openface_csv, write_openface_parquet

REFERENCES = ["default.csv", "2015-10-15-15-14.csv", "image_sequence.csv", "images/sample6.csv"]


@pytest.mark.parametrize("name", REFERENCES)
def test_reference_files_round_trip_byte_for_byte(name, reference_dir, tmp_path):
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


def test_parquet_has_the_same_columns(reference_dir, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    table = read_openface_csv(reference_dir / "default.csv")
    out = write_openface_parquet(tmp_path / "d.parquet", table)
    t = pq.read_table(out)
    assert t.column_names == list(table)
    assert t.schema.field("frame").type == "int32"
    np.testing.assert_array_equal(t.column("AU12_r").to_numpy(), table["AU12_r"])
