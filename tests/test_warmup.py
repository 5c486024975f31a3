"""gpuau.warmup: child processes fill Numba's cache with exactly the entries the pipeline loads."""
import json
import logging
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

# A fresh process: is the cache stamped warm, then the pipeline on the first frames of a video; per
# Numba function of gpuau that ran, its cache hits and misses (a miss: compiled in this process).
_PIPELINE = """
import json, sys
from numba.core.registry import CPUDispatcher
from gpuau.warmup import is_warm
warm = is_warm()
from gpuau.pipeline import Analyzer
from gpuau.video import open_source
frames = [f.image for f, _ in zip(open_source(sys.argv[1]), range(3))]
Analyzer("cpu").analyze_frames(frames)
stats = {f"{name}.{k}": [sum(v.stats.cache_hits.values()), sum(v.stats.cache_misses.values())]
         for name, mod in list(sys.modules.items()) if name.startswith("gpuau")
         for k, v in vars(mod).items() if isinstance(v, CPUDispatcher) and v.__module__ == name}
# the modules Numba imports when it refreshes its CPU target for a compile, not to load a cached kernel
refreshed = "numba.np.polynomial.polynomial_core" in sys.modules
print(json.dumps({"warm": warm, "stats": stats, "refreshed": refreshed}))
"""


def test_warm_up_fills_the_cache_the_pipeline_loads(tmp_path, models_dir, media_dir):
    """Into an empty cache: the session's own where it is still empty (a fresh clone, CI: this test runs first,
    tests/conftest.py, and every later test loads what it compiled instead of compiling it again), else a new one."""
    from gpuau.warmup import is_warm

    env = dict(os.environ, GPUAU_MODELS=str(models_dir))
    if is_warm():
        env.update(NUMBA_CACHE_DIR=str(tmp_path / "numba"), GPUAU_CACHE=str(tmp_path / "models"))
    warm = subprocess.run([sys.executable, "-m", "gpuau", "warmup"], env=env, capture_output=True, text=True)
    assert warm.returncode == 0, warm.stderr
    again = subprocess.run([sys.executable, "-m", "gpuau", "warmup"], env=env, capture_output=True, text=True)
    assert (again.returncode, again.stderr) == (0, "gpuau: the CPU kernels are compiled already, for this version of "
                                                   "gpuau and this CPU\n")
    run = subprocess.run([sys.executable, "-c", _PIPELINE, str(media_dir / "default.wmv")], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "compiling the CPU kernels" not in run.stderr  # the stamp was found: no second warm-up
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["warm"]
    stats = out["stats"]
    assert {name for name, (_, misses) in stats.items() if misses} == set()
    assert not out["refreshed"]  # load_without_refresh: ~0.15 s less start-up
    # kernels of each child process's group were loaded from the cache
    for module in ("gpuau.cpu.pnet_pyramid", "gpuau.cpu.validator_cnn",  # detect
                   "gpuau.cpu.ccnf_response", "gpuau.cpu.nu_rlms", "gpuau.cpu.pdm_fit",  # patches, nu_rlms, landmarks
                   "gpuau.cpu.fhog", "gpuau.cpu.warp_affine", "gpuau.cpu.running_median"):  # aus
        assert sum(hits for name, (hits, _) in stats.items() if name.startswith(module + ".")) >= 1, module


def test_other_numba_functions_load_as_numba_loads_them(tmp_path):
    """load_without_refresh changes how gpuau's kernels load, not a caller's own cached Numba functions."""
    (tmp_path / "mine.py").write_text("import numba\n\n@numba.njit(cache=True)\ndef add_one(x):\n    return x + 1\n")
    probe = ("import sys\nfrom gpuau.warmup import load_without_refresh\nload_without_refresh()\nimport mine\n"
             "assert mine.add_one(1) == 2\nprint(sum(mine.add_one.stats.cache_hits.values()), "
             "'numba.np.polynomial.polynomial_core' in sys.modules)")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), PYTHONPATH=os.pathsep.join(
        [str(tmp_path)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    runs = [subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    assert [r.stdout.split() for r in runs] == [["0", "True"], ["1", "True"]]  # compiled, then loaded after a refresh


def test_a_kernel_missing_from_the_cache_compiles(tmp_path):
    """Under load_without_refresh a gpuau kernel that Numba's cache lacks compiles (Numba's compiler refreshes the
    target itself) and runs: a rotation matrix from Euler angles."""
    probe = ("import numpy as np\nfrom gpuau.warmup import load_without_refresh\nload_without_refresh()\n"
             "from gpuau.cpu.pdm_fit import euler_to_rotation as f\nr = f(np.array([0.1, -0.2, 0.3], np.float32))\n"
             "assert np.allclose(r @ r.T, np.eye(3), atol=1e-6) and abs(np.linalg.det(r) - 1) < 1e-6\n"
             "print(sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))  # an empty cache
    run = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0", "1"]


def test_a_failing_child_is_logged_not_raised(monkeypatch, models_dir, caplog):
    from gpuau import warmup

    monkeypatch.setattr(sys, "executable", "/bin/false")
    with caplog.at_level(logging.WARNING, logger="gpuau.warmup"):
        assert warmup.warm_up(models_dir) is False
    assert "compile in this process instead" in caplog.text


def test_stamp_follows_the_kernel_sources_only(tmp_path, monkeypatch):
    """Editing a module without cached kernels keeps the warm-up's stamp; editing a kernel's source
    (what invalidates Numba's cache) gives a new one."""
    from gpuau import warmup

    (tmp_path / "kernels.py").write_text("@nb.njit(cache=True)\ndef f(x):\n    return x\n")
    (tmp_path / "glue.py").write_text("def g():\n    return 1\n")
    monkeypatch.setattr(warmup, "PACKAGE", tmp_path)
    stamp = warmup._stamp()
    (tmp_path / "glue.py").write_text("def g():\n    return 2  # edited\n")
    assert warmup._stamp() == stamp
    (tmp_path / "kernels.py").write_text("@nb.njit(cache=True)\ndef f(x):\n    return x + 1\n")
    assert warmup._stamp() != stamp


def test_stamp_follows_the_cpu_target():
    """A cache folder shared by machines of different CPUs holds Numba's kernels for each, and each needs its own
    warm-up: the stamp names the target Numba compiles for (here set by NUMBA_CPU_NAME, in fresh processes)."""
    code = "from gpuau import warmup; print(warmup._stamp())"
    stamps = {}
    for cpu in ("", "haswell", "x86-64"):
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CPU_NAME"} | ({"NUMBA_CPU_NAME": cpu} if cpu else {})
        stamps[cpu] = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                     check=True).stdout.strip()
    assert len(set(stamps.values())) == 3
    assert len({s.rpartition("-")[0] for s in stamps.values()}) == 1  # the same code, three targets


def test_numba_cache_folder_follows_every_kernel_source(tmp_path):
    """Numba checks a cached function against its own file only, so gpuau keeps the cache of the kernels in a
    folder per version of all kernel sources: editing a helper in one module changes the folder of all."""
    from gpuau.cpu import CACHE_PREFIX, kernels_digest

    (tmp_path / "helper.py").write_text("@nb.njit(cache=True)\ndef h(x):\n    return x\n")
    (tmp_path / "kernel.py").write_text("@nb.njit(cache=True)\ndef f(x):\n    return h(x)\n")
    (tmp_path / "glue.py").write_text("def g():\n    return 1\n")
    digest = kernels_digest(tmp_path)
    (tmp_path / "glue.py").write_text("def g():\n    return 2\n")
    assert kernels_digest(tmp_path) == digest
    (tmp_path / "helper.py").write_text("@nb.njit(cache=True)\ndef h(x):\n    return 0 * x\n")
    assert kernels_digest(tmp_path) != digest

    # in a fresh process: under the folder given, once (a child process keeps its parent's choice)
    probe = "import os, gpuau.cpu; print(os.environ['NUMBA_CACHE_DIR'])"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    first = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout.strip()
    assert first == str(tmp_path / "numba" / f"{CACHE_PREFIX}{kernels_digest()}")
    again = subprocess.run([sys.executable, "-c", probe], env=dict(env, NUMBA_CACHE_DIR=first), capture_output=True,
                           text=True).stdout.strip()
    assert again == first
