"""Kernel wrappers allocate and launch under ``cupy.cuda.Device(backend.device_id)``, so ``cuda:1``
works in a multi-GPU process: every wrapper in gpuau/kernels/ goes through ``loader.on_device``,
and a launch on a ``cuda:1`` backend (a fake CuPy module running the emulator) happens with
device 1 current."""
import importlib
import inspect
import sys
import types

import numpy as np
import pytest

from gpuau.device import Backend
from gpuau.kernels import loader
from gpuau.kernels.emulator import compile_module

NOT_WRAPPERS = {"__init__", "loader", "nvrtc", "emulator"}
WRAPPER_MODULES = sorted(p.stem for p in loader.KERNEL_DIR.glob("*.py") if p.stem not in NOT_WRAPPERS)


def kernel_wrappers():
    """``(module, name, function)`` of every public function of gpuau/kernels/ taking ``backend`` first."""
    found = []
    for stem in WRAPPER_MODULES:
        module = importlib.import_module(f"gpuau.kernels.{stem}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__ or name.startswith("_"):
                continue
            params = list(inspect.signature(fn).parameters)
            if params and params[0] == "backend":
                found.append((stem, name, fn))
    return found


def test_every_kernel_wrapper_runs_on_its_device():
    wrappers = kernel_wrappers()
    assert {"warp_affine", "ccnf_response", "nu_rlms", "fhog"} <= {name for _, name, _ in wrappers}
    missing = [f"{stem}.{name}" for stem, name, fn in wrappers if not getattr(fn, "on_device", False)]
    assert not missing, f"kernel wrappers not decorated with loader.on_device: {missing}"


def test_launches_only_through_backend_load_module():
    """Wrappers reach kernels through ``backend.load_module`` (the loader), never CuPy directly."""
    for stem in WRAPPER_MODULES:
        text = (loader.KERNEL_DIR / f"{stem}.py").read_text()
        assert "import cupy" not in text and "RawModule" not in text and "RawKernel" not in text, stem


class FakeCupy(types.ModuleType):
    """Just enough of CuPy for the loader: ``cuda.Device`` contexts (tracking the current device)
    and ``RawModule`` built by the CPU emulator, whose kernels record the device current at launch."""

    def __init__(self):
        super().__init__("cupy")
        self.current = 0
        self.launch_devices = []
        fake = self

        class Device:
            def __init__(self, device_id):
                self.id = device_id

            def __enter__(self):
                self.previous, fake.current = fake.current, self.id
                return self

            def __exit__(self, *exc):
                fake.current = self.previous

            def use(self):
                fake.current = self.id

        class RawModule:
            def __init__(self, code, options=()):
                self.built_on = fake.current
                self.module = compile_module(code, name="fake_cupy")

            def compile(self):
                pass

            def get_function(self, name):
                kernel = self.module.get_function(name)

                def launch(grid, block, args):
                    fake.launch_devices.append((fake.current, self.built_on))
                    kernel(grid, block, args)

                return launch

        self.cuda = types.SimpleNamespace(Device=Device)
        self.RawModule = RawModule


@pytest.fixture
def fake_cupy(monkeypatch):
    fake = FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    loader._load.cache_clear()
    yield fake
    loader._load.cache_clear()


def test_cuda1_launch_runs_under_device_1(fake_cupy):
    from gpuau.cpu.warp_affine import warp_affine
    from gpuau.kernels import emulated_arrays

    backend = Backend("cuda", device_id=1, xp=emulated_arrays)  # the emulated backend's arrays stand in for CuPy's
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 40, 50), dtype=np.uint8)
    matrices = np.tile(np.array([[0.9, 0.1, 3.0], [-0.1, 0.9, 5.0]]), (3, 1, 1))
    index = np.array([0, 1, 1], np.int32)
    out = backend.kernels.warp_affine(*map(backend.xp.asarray, (images, index, matrices)), 20, 30)
    np.testing.assert_array_equal(backend.asnumpy(out), warp_affine(images, index, matrices, 20, 30))
    assert fake_cupy.launch_devices == [(1, 1)]  # launched with device 1 current, module built there
    assert fake_cupy.current == 0  # and the caller's device restored


def test_device_context_is_a_no_op_off_cuda():
    for name in ("cpu", "emulated"):
        with loader.device_context(Backend(name)) as ctx:
            assert ctx is None


def test_cuda1_asarray_allocates_under_device_1(fake_cupy):
    """``Backend.asarray`` (every upload outside a kernel wrapper) runs with the backend's device current."""
    seen = []
    xp = types.SimpleNamespace(asarray=lambda a, dtype=None: seen.append(fake_cupy.current) or np.asarray(a, dtype))
    backend = Backend("cuda", device_id=1, xp=xp)
    backend.asarray([1, 2, 3], dtype=np.float32)
    assert seen == [1] and fake_cupy.current == 0


def test_analyses_make_their_gpu_current_on_the_thread_that_runs_them(fake_cupy, media_dir, monkeypatch):
    """CUDA's current device is per thread and starts at 0 on each: what CuPy allocates outside the kernel wrappers
    (the engine's staging buffers, the AU state) lands on the current device, so every analysis makes its backend's
    device current before each frame (or engine step), on whichever thread iterates it."""
    import threading

    from gpuau.pipeline import Analyzer

    backend = Backend("cuda", device_id=1, xp=types.SimpleNamespace())
    Backend.use(backend)
    assert fake_cupy.current == 1
    fake_cupy.current = 0
    Backend.use(Backend("cpu"))  # a no-op off CUDA
    assert fake_cupy.current == 0

    calls = []
    monkeypatch.setattr(Backend, "use", lambda self: calls.append((self.name, threading.current_thread().name)))
    analyzer = Analyzer("cpu", quality="fast")
    frames = [np.full((60, 80, 3), 90, np.uint8)] * 3
    worker = threading.Thread(target=lambda: analyzer.analyze_frames(frames, fps=10), name="caller")
    worker.start()
    worker.join()
    assert calls == [("cpu", "caller")] * 3


def test_an_au_analyzer_for_cuda1_keeps_its_state_on_gpu_1(fake_cupy, models_dir):
    """The AU models and the per-frame history are made when the analysis starts, on the caller's thread, whose
    current GPU may be another: they are placed on the backend's."""
    from gpuau.au import AUAnalyzer

    made = []

    def record(name):
        return lambda *args, **kwargs: made.append((name, fake_cupy.current)) or np.zeros((1, 1))

    backend = Backend("cuda", device_id=1, xp=types.SimpleNamespace(asarray=record("asarray"), zeros=record("zeros")))
    AUAnalyzer(models_dir, device=backend)
    assert {name for name, _ in made} == {"asarray", "zeros"} and {device for _, device in made} == {1}
    assert fake_cupy.current == 0


def test_a_full_history_block_is_replaced_on_its_gpu(fake_cupy, monkeypatch):
    """A stream's history moves each full block to the host and takes a new one on the device, once per 4096 frames,
    in whichever thread appends the frame: the new block goes on the backend's GPU, not that thread's current one."""
    from gpuau.au.analyzer import _History

    made = []
    xp = types.SimpleNamespace(zeros=lambda shape: made.append(fake_cupy.current) or np.zeros(shape))
    backend = Backend("cuda", device_id=1, xp=xp)
    monkeypatch.setattr(Backend, "asnumpy", lambda self, a: np.asarray(a))
    monkeypatch.setattr(_History, "BLOCK", 2)
    history = _History(backend, 3)
    for k in range(5):  # three blocks: the first made by the constructor, two by the appends
        history.append(np.full(3, k))
    assert made == [1, 1, 1] and fake_cupy.current == 0
    np.testing.assert_array_equal(history.rows[:, 0], np.arange(5))
