"""Output files in OpenFace's formats."""
from gpuau.io.openface_csv import (
    OpenFaceCSVWriter,
    openface_columns,
    read_openface_csv,
    write_openface_csv,
    write_openface_parquet,
)

__all__ = ["OpenFaceCSVWriter", "openface_columns", "read_openface_csv", "write_openface_csv", "write_openface_parquet"]
