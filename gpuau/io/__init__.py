"""Output files in OpenFace's formats."""
from gpuau.io.openface_csv import (
    OpenFaceCSVWriter,
    openface_columns,
    read_openface_csv,
    write_openface_csv,
    write_openface_parquet,
)
from gpuau.io.rows import RowWriter

__all__ = ["OpenFaceCSVWriter", "RowWriter", "openface_columns", "read_openface_csv", "write_openface_csv", "write_openface_parquet"]
