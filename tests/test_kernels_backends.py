"""The backend fixture's plumbing: which backends run, the gaps file, the tolerance table."""
import numpy as np
import pytest

from backends import GAPS_FILE, TOLERANCES, assert_backend_close, backend_names, load_gaps
from gpuau.device import cuda_available


def test_backend_names():
    ids = [p.id for p in backend_names()]
    assert ids[:2] == ["cpu", "emulated"]
    assert ("cuda" in ids) == cuda_available()


def test_gaps_file_parses(tmp_path):
    assert isinstance(load_gaps(GAPS_FILE), dict)
    gaps = tmp_path / "gaps.toml"
    gaps.write_text('[[gap]]\ntest = "test_x"\nbackend = "emulated"\nreason = "no dynamic shared memory"\n')
    assert load_gaps(gaps) == {("test_x", "emulated"): "no dynamic shared memory"}


def test_assert_backend_close(backend):
    a = np.linspace(0, 1, 11, dtype=np.float32)
    rtol, atol = TOLERANCES[a.dtype]
    assert_backend_close(backend, backend.asarray(a + a * np.float32(rtol / 4)), a)
    with pytest.raises(AssertionError):
        assert_backend_close(backend, backend.asarray(a + np.float32(1e-3)), a)
    with pytest.raises(AssertionError):
        assert_backend_close(backend, backend.asarray(a + a * np.float32(rtol / 4)), a, exact=True)
    with pytest.raises(AssertionError, match="dtype"):
        assert_backend_close(backend, backend.asarray(a.astype(np.float64)), a)
