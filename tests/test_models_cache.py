"""The parsed-model cache (``gpuau.models.cache``): what a parser returns comes back from the cache file
unchanged, on real model files; a damaged cache file is parsed again, never trusted."""
import numpy as np
import pytest

from gpuau.landmarks.pdm import MAIN_PDM, PDM
from gpuau.models.cache import KEEP, load_cached, read_arrays, write_arrays
from gpuau.models.pdm_file import parse_pdm


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUAU_CACHE", str(tmp_path))
    return tmp_path


def test_real_model_comes_back_from_the_cache_unchanged(cache, models_dir):
    path = models_dir / MAIN_PDM
    parsed = load_cached(path, parse_pdm)
    (cached_file,) = cache.glob("In-the-wild_aligned_PDM_68.txt.*.arrays")
    again = load_cached(path, parse_pdm)
    assert again.keys() == parsed.keys()
    for k in parsed:
        assert again[k].dtype == parsed[k].dtype and again[k].shape == parsed[k].shape
        np.testing.assert_array_equal(again[k], parsed[k])
        assert again[k].flags.writeable and again[k].flags.aligned
    again["mean_shape"][:] = 0  # a private mapping: the file keeps the model
    np.testing.assert_array_equal(read_arrays(cached_file)["mean_shape"], parsed["mean_shape"])
    np.testing.assert_array_equal(PDM.load(models=models_dir).mean_shape, parsed["mean_shape"])  # the loader's view


def test_every_shape_and_dtype_round_trips(tmp_path):
    arrays = {"scalar": np.float64(0.25), "empty": np.zeros((0, 3), np.float32), "flags": np.array([True, False]),
              "ints": np.arange(7, dtype=np.int32).reshape(7, 1), "fortran": np.asfortranarray(np.eye(3)),
              "text": np.array(["left_eye_28", "inner"])}
    write_arrays(tmp_path / "x.arrays", arrays)
    back = read_arrays(tmp_path / "x.arrays")
    for k, a in arrays.items():
        a = np.asarray(a)
        assert back[k].dtype == a.dtype and back[k].shape == a.shape, k
        np.testing.assert_array_equal(back[k], a)
    with pytest.raises(TypeError, match="object"):
        write_arrays(tmp_path / "y.arrays", {"o": np.array([None])})


@pytest.mark.parametrize("damage", [lambda b: b[:len(b) // 2], lambda b: b"not a cache" + b[11:], lambda b: b""])
def test_a_damaged_cache_file_is_parsed_again(cache, damage):
    calls = []

    def parse(path):
        calls.append(path)
        return {"values": np.arange(1000, dtype=np.float64)}

    source = cache / "model.txt"
    source.write_text("model")
    load_cached(source, parse)
    (cached_file,) = cache.glob("model.txt.*.arrays")
    cached_file.write_bytes(damage(cached_file.read_bytes()))
    np.testing.assert_array_equal(load_cached(source, parse)["values"], np.arange(1000.0))
    assert len(calls) == 2


def test_the_cache_keeps_the_most_recently_used_files_of_a_model(cache, tmp_path):
    """A model file copied, moved or fetched again gets a new key: the cache keeps the KEEP most recently used
    parses of a file name and removes the older ones, instead of growing with every copy."""
    import os

    def parse(path):
        return {"x": np.frombuffer(path.read_bytes(), np.uint8).copy()}

    def entries():
        return set(cache.glob("m.txt.*.arrays"))

    folders = [tmp_path / f"models{i}" for i in range(KEEP + 3)]
    for i, folder in enumerate(folders):
        folder.mkdir()
        (folder / "m.txt").write_bytes(bytes([i]))
    for i, folder in enumerate(folders[:KEEP]):  # parsed i + 1 seconds after the epoch
        before = entries()
        load_cached(folder / "m.txt", parse, name="p")
        (new,) = entries() - before
        os.utime(new, (i + 1, i + 1))
    assert load_cached(folders[0] / "m.txt", parse, name="p")["x"].tolist() == [0]  # a hit: used now
    for folder in folders[KEEP:]:  # three more copies: the three least recently used go
        load_cached(folder / "m.txt", parse, name="p")
    assert sorted(int(read_arrays(f)["x"][0]) for f in entries()) == [0, *range(4, KEEP + 3)]
    (cache / "unrelated.arrays").write_bytes(b"x")  # other files are left alone
    load_cached(folders[1] / "m.txt", parse, name="p")
    assert (cache / "unrelated.arrays").exists() and len(entries()) == KEEP


def test_a_model_file_changed_at_its_path_is_parsed_again(cache, tmp_path):
    """A model file rewritten at the same path (`gpuau models fetch` replacing a damaged one) is parsed again: the
    cache key holds its size and modification time."""
    import os

    calls = []

    def parse(path):
        calls.append(path)
        return {"x": np.frombuffer(path.read_bytes(), np.uint8).copy()}

    (tmp_path / "models").mkdir()
    source = tmp_path / "models" / "m.txt"
    source.write_bytes(b"\x01")
    assert load_cached(source, parse, name="p")["x"].tolist() == [1]
    assert load_cached(source, parse, name="p")["x"].tolist() == [1] and len(calls) == 1  # unchanged: a hit
    source.write_bytes(b"\x02\x03")  # another size
    assert load_cached(source, parse, name="p")["x"].tolist() == [2, 3]
    st = source.stat()
    source.write_bytes(b"\x04\x05")  # the same size, another modification time
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_cached(source, parse, name="p")["x"].tolist() == [4, 5]
    assert len(calls) == 3
