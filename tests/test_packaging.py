"""What a wheel of gpuau carries: every file the package reads at run time beside its modules (the kernels'
``.cu`` sources and the headers they include, the model manifest) is named by pyproject.toml's package data.
An editable install reads them from the checkout, so only this check sees one left out of a real install."""
from fnmatch import fnmatch
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_package_data_names_every_file_beside_the_modules():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]
    left_out = []
    for path in (ROOT / "gpuau").rglob("*"):
        if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        package = ".".join(path.parent.relative_to(ROOT).parts)
        if not any(fnmatch(path.name, p) for p in patterns.get(package, [])):
            left_out.append(str(path.relative_to(ROOT)))
    assert not left_out, f"not in [tool.setuptools.package-data]: {left_out}"
    assert (ROOT / "gpuau" / "kernels" / "sgemm_order.cuh").exists()  # what the check is for: included headers
