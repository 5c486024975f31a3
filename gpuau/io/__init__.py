"""Output files in OpenFace's formats."""
from gpuau.io.faces import AlignedFaces, FaceRecorder, aligned_dir, hog_path, read_hog
from gpuau.io.openface_csv import (
    COLUMN_GROUPS,
    OpenFaceCSVWriter,
    column_groups,
    kept_columns,
    openface_columns,
    read_openface_csv,
    read_openface_table,
    write_openface_csv,
    write_openface_parquet,
)
from gpuau.io.rows import RowWriter

__all__ = ["COLUMN_GROUPS", "AlignedFaces", "FaceRecorder", "OpenFaceCSVWriter", "RowWriter", "aligned_dir",
           "column_groups", "hog_path", "kept_columns", "openface_columns", "read_hog", "read_openface_csv",
           "read_openface_table", "write_openface_csv", "write_openface_parquet"]
