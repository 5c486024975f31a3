"""The CPU emulator of CUDA: thread/block indexing, __syncthreads, shared memory, atomics, argument
checking, the loader's memoisation, and AddressSanitizer catching out-of-bounds kernels."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gpuau.device import resolve_device
from gpuau.kernels import emulated_arrays as xp
from gpuau.kernels.emulator import EmulatorError, compile_module, kernel_names, sanitizer_env
from gpuau.kernels import loader
from gpuau.kernels.loader import declared_defines, kernel_path, kernel_source, load_module, normalize_defines

INDEXING = r"""
extern "C" __global__ void coords(int* out, int n) {
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int i = b * (blockDim.x * blockDim.y * blockDim.z) + t;
    if (i < n) {
        atomicAdd(&out[4 * n], 1);  // blocks of this source run on several OS threads
        out[4 * i + 0] = threadIdx.x + 100 * threadIdx.y + 10000 * threadIdx.z;
        out[4 * i + 1] = blockIdx.x + 100 * blockIdx.y + 10000 * blockIdx.z;
        out[4 * i + 2] = blockDim.x + 100 * blockDim.y + 10000 * blockDim.z;
        out[4 * i + 3] = gridDim.x + 100 * gridDim.y + 10000 * gridDim.z;
    }
}
"""

# Block-wide tree reduction through shared memory: wrong without a real barrier between steps.
REDUCTION = r"""
#ifndef BLOCK
#define BLOCK 128
#endif
extern "C" __global__ void block_sums(const float* x, float* sums, int n) {
    __shared__ float partial[BLOCK];
    const int i = blockIdx.x * BLOCK + threadIdx.x;
    partial[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int stride = BLOCK / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) sums[blockIdx.x] = partial[0];
}
// Threads past n return before the __syncthreads below, as real kernels do.
extern "C" __global__ void counts(const int* labels, int* hist, float* total, unsigned* maxima, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(&hist[labels[i]], 1);
    atomicAdd(total, 0.5f);
    atomicMax(&maxima[labels[i]], (unsigned)i);
    __syncthreads();
}
"""


@pytest.fixture(scope="module")
def indexing():
    return compile_module(INDEXING, "test_indexing").get_function("coords")


def test_thread_and_block_indices(indexing):
    grid, block = (3, 2, 2), (4, 3, 2)
    n = 3 * 2 * 2 * 4 * 3 * 2
    out = xp.full((n + 1, 4), -1, np.int32)
    out[n] = 0
    indexing(grid, block, (out, np.int32(n)))
    out = out.get()
    assert out[n, 0] == n
    out = out[:n]
    t = np.arange(24)
    tx, ty, tz = t % 4, (t // 4) % 3, t // 12
    b = np.arange(12)
    bx, by, bz = b % 3, (b // 3) % 2, b // 6
    np.testing.assert_array_equal(out[:, 0], np.tile(tx + 100 * ty + 10000 * tz, 12))
    np.testing.assert_array_equal(out[:, 1], np.repeat(bx + 100 * by + 10000 * bz, 24))
    assert (out[:, 2] == 4 + 300 + 20000).all() and (out[:, 3] == 3 + 200 + 20000).all()


def test_syncthreads_reduction_and_atomics():
    module = compile_module("#define BLOCK 256\n" + REDUCTION, "test_reduction")
    rng = np.random.default_rng(0)
    x = rng.integers(-50, 50, 5000).astype(np.float32)  # integers: float sums are exact
    sums = xp.zeros(20, np.float32)
    module.get_function("block_sums")(20, 256, (xp.asarray(x), sums, np.int32(x.size)))
    np.testing.assert_array_equal(sums.get(), np.pad(x, (0, 120)).reshape(20, 256).sum(1))

    labels = rng.integers(0, 7, 3000).astype(np.int32)
    hist, total, maxima = xp.zeros(7, np.int32), xp.zeros(1, np.float32), xp.zeros(7, np.uint32)
    module.get_function("counts")((12, 1, 1), (256, 1, 1),
                                  (xp.asarray(labels), hist, total, maxima, np.int32(labels.size)))
    np.testing.assert_array_equal(hist.get(), np.bincount(labels, minlength=7))
    assert float(total[0]) == 1500.0
    np.testing.assert_array_equal(maxima.get(), [np.flatnonzero(labels == k).max() for k in range(7)])


def test_argument_checking(indexing):
    out = xp.zeros((9, 4), np.int32)
    with pytest.raises(TypeError, match="needs a device array"):  # CuPy refuses host arrays too
        indexing(1, 8, (np.zeros((9, 4), np.int32), np.int32(8)))
    with pytest.raises(TypeError, match="NumPy scalar"):
        indexing(1, 8, (out, 8))
    with pytest.raises(TypeError, match="4-byte signed integer"):
        indexing(1, 8, (out, np.int64(8)))
    with pytest.raises(TypeError, match="4-byte signed integer"):
        indexing(1, 8, (out, np.float32(8)))
    with pytest.raises(TypeError, match="4-byte signed integer"):
        indexing(1, 8, (out, np.uint32(8)))  # same size, other signedness: CUDA would reinterpret it
    with pytest.raises(TypeError, match="takes 2 arguments"):
        indexing(1, 8, (out,))
    with pytest.raises(ValueError, match="C-contiguous"):
        indexing(1, 8, (xp.zeros((8, 8), np.int32)[:, ::2], np.int32(8)))
    with pytest.raises(EmulatorError, match="dynamic shared memory"):
        indexing(1, 8, (out, np.int32(8)), shared_mem=64)
    with pytest.raises(EmulatorError, match="invalid launch configuration"):
        indexing(1, 2048, (out, np.int32(8)))
    with pytest.raises(EmulatorError, match="at most 2\\*\\*31 - 1"):  # 2**32 + 1 blocks would run as 1
        indexing(2**32 + 1, 8, (out, np.int32(8)))


def test_device_arrays_keep_cupys_rules():
    """The emulated backend's arrays refuse what CuPy refuses, so host code that would fail on a GPU fails
    here, and take what CuPy takes."""
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    d = resolve_device("emulated").asarray(host)
    assert isinstance(d, xp.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(d)
    for mixed in (lambda: d + host, lambda: host * d, lambda: xp.stack([d, host]), lambda: xp.where(host > 0, d, 0)):
        with pytest.raises(TypeError, match="Unsupported type"):
            mixed()
    with pytest.raises(TypeError, match="incorrect type"):
        xp.ascontiguousarray(host)
    # CuPy's pool hands back what an earlier array left: an empty array is no zeros here either (NaN, -1)
    assert np.isnan(xp.asnumpy(xp.empty((4, 3), np.float32))).all()
    assert (xp.asnumpy(xp.empty_like(d, dtype=np.int32)) == -1).all() and xp.empty_like(host).shape == (2, 3)
    with pytest.raises(TypeError, match="CuPy lacks"):
        np.insert(d, 0, 1.0)
    with pytest.raises(AttributeError):
        d.ctypes
    with pytest.raises(TypeError):
        range(d[0, 0])
    host[0, 0] = -1  # asarray copied it
    d[0] = host[1]  # a host value assigned in
    np.testing.assert_array_equal(d[np.array([0, 1]), 1:].get(), [[4, 5], [4, 5]])  # host indices
    total = (d * 2 + np.float32(1)).sum()  # scalar operands; a reduction is a 0-d device array
    assert isinstance(total, xp.ndarray) and total.ndim == 0 and float(total) == 54.0
    assert np.stack([d, d]).shape == (2, 2, 3) and isinstance(np.stack([d, d]), xp.ndarray)  # __array_function__
    assert xp.asarray(d) is d and xp.ascontiguousarray(d) is d
    np.multiply(d, 1, out=d)  # a device output
    with pytest.raises(TypeError, match="Unsupported type"):
        np.multiply(d, 1, out=host)
    assert isinstance(xp.empty_like(host), xp.ndarray)  # a host prototype's shape and dtype
    copy = d.get()
    copy[0, 0] = 7
    assert float(d[0, 0]) == 3.0 and xp.asnumpy(host) is host


def test_kernel_names_and_build_errors():
    assert kernel_names(INDEXING + REDUCTION) == ["coords", "block_sums", "counts"]
    bounded = 'extern "C" __global__ void __launch_bounds__(256) a(int* x) {}\n'
    bounded += 'extern "C" __global__ __launch_bounds__(128, 2) void b(int* x) {}\n'
    assert kernel_names(bounded) == ["a", "b"]
    with pytest.raises(EmulatorError, match="no `extern"):
        compile_module("__global__ void k() {}", "test_none")
    with pytest.raises(EmulatorError, match="build of test_bad.cu failed"):
        compile_module('extern "C" __global__ void k(int* a) { a[0] = __shfl_sync(0xffffffff, 1, 0); }', "test_bad")


def test_a_launch_over_a_kernels_launch_bounds_is_refused():
    """A GPU refuses a block larger than the kernel's __launch_bounds__ (too many resources requested), which the
    emulator's header drops: it keeps each bound and checks it. pdm_fit.cu and ccnf_response.cu stride their loops by
    the THREADS they are bounded by."""
    source = """#define WIDE 32
extern "C" __global__ void __launch_bounds__(2 * WIDE)
fill(int* out) { out[blockIdx.x * blockDim.x + threadIdx.x] = 1; }
extern "C" __global__ __launch_bounds__(128, 2) void other(int* out) { out[threadIdx.x] = 2; }
extern "C" __global__ void free_(int* out) { out[threadIdx.x] = 3; }
"""
    module = compile_module(source, "test_bounds")
    fill, other, free_ = (module.get_function(n) for n in ("fill", "other", "free_"))
    assert (fill.launch_bound, other.launch_bound, free_.launch_bound) == (64, 128, None)
    out = xp.zeros(256, np.int32)
    fill((2,), (64,), (out,))
    free_((1,), (256,), (out,))
    with pytest.raises(EmulatorError, match=r"fill: block=\(8, 16\) has 128 threads, over its __launch_bounds__\(64\)"):
        fill((1,), (8, 16), (out,))
    with pytest.raises(EmulatorError, match="__launch_bounds__ is not one the emulator reads"):  # else unchecked
        compile_module('extern "C" __global__ void __launch_bounds__((WIDE) * 2) k(int* a) {}', "test_unread_bound")
    pdm = load_module(resolve_device("emulated"), "pdm_fit", declared_defines("pdm_fit")[0])
    assert {pdm.get_function(n).launch_bound for n in pdm.kernel_names} == {128}


def test_loader_memoises_and_prepends_defines():
    emulated = resolve_device("emulated")
    assert load_module(emulated, "warp") is load_module(emulated, "warp", {})
    assert normalize_defines({"B": 2, "A": True}) == (("A", "1"), ("B", "2"))
    assert kernel_source("warp", {"N": 3}).startswith("#define N 3\n")
    assert declared_defines("warp") == [()]
    with pytest.raises(ValueError):
        normalize_defines({"1X": 1})
    with pytest.raises(ValueError, match="no .cu kernels"):
        load_module(resolve_device("cpu"), "warp")


def test_kernel_headers_are_inlined_once_with_their_lines(tmp_path, monkeypatch):
    """``#include "x.cuh"`` is replaced by the header (once, however often included), and ``#line``
    directives give the compiler each line's own file and number."""
    text = kernel_source("ccnf_response")
    assert "#include" not in text and text.count("float lane_sum(") == 1
    assert '#line 1 "sgemm_order.cuh"' in text
    line = text.splitlines().index('#line 1 "sgemm_order.cuh"')
    resumed = next(t for t in text.splitlines()[line:] if t.startswith('#line') and "ccnf_response.cu" in t)
    number = int(resumed.split()[1])
    assert kernel_path("ccnf_response").read_text().splitlines()[number - 2] == '#include "sgemm_order.cuh"'
    monkeypatch.setattr(loader, "KERNEL_DIR", tmp_path)
    (tmp_path / "a.cu").write_text('#include "h.cuh"\n#include "h.cuh"\nint a;\n')
    (tmp_path / "h.cuh").write_text("int h;\n")
    assert kernel_source("a").count("int h;") == 1
    (tmp_path / "b.cu").write_text('#include "missing.cuh"\n')
    with pytest.raises(FileNotFoundError, match="b.cu:1: no kernel header"):
        kernel_source("b")


OOB_SCRIPT = textwrap.dedent(
    r"""
    import sys
    import numpy as np
    from gpuau.kernels.emulator import compile_module
    from gpuau.device import resolve_device
    from gpuau.kernels import emulated_arrays as xp
    if sys.argv[1] == "fibers":
        k = compile_module(sys.argv[2], "test_reduction").get_function("block_sums")
        x, sums = xp.ones(128 * 40, np.float32), xp.zeros(40, np.float32)
        k(40, 128, (x, sums, np.int32(x.size)))
        assert (sums.get() == 128).all()
    elif sys.argv[1] == "oob":
        k = compile_module('extern "C" __global__ void k(float* a, int n) {'
                           ' int i = blockIdx.x * blockDim.x + threadIdx.x; a[i] = 1.0f; }', "test_oob")
        k.get_function("k")(9, 128, (xp.zeros(1100, np.float32), np.int32(1100)))  # 52 writes past the end
    else:
        b = resolve_device("emulated")
        rng = np.random.default_rng(0)
        m = np.tile(np.array([[1.3, -0.4, 0.0], [0.4, 1.3, 0.0]]), (64, 1, 1))
        m[:, :, 2] = rng.uniform(-80, 200, (64, 2))
        img = rng.integers(0, 255, (2, 120, 160, 3)).astype(np.uint8)
        b.kernels.warp_affine(img, np.arange(64, dtype=np.int32) % 2, m, 50, 70)
    print("done")
    """
)


@pytest.mark.parametrize("case", ["oob", "warp", "fibers"])
def test_address_sanitizer(case):
    """GPUAU_EMU_SANITIZE=address builds kernels with ASan: an out-of-bounds write aborts with a
    report; warp_affine, with samples across every border, and a __syncthreads kernel run clean."""
    env = sanitizer_env()
    if not env["LD_PRELOAD"].startswith("/"):
        pytest.fail("the C++ compiler ships no libasan.so")
    proc = subprocess.run([sys.executable, "-c", OOB_SCRIPT, case, REDUCTION], env=env, capture_output=True, text=True, timeout=300)
    if case == "oob":
        assert proc.returncode != 0 and "heap-buffer-overflow" in proc.stderr, proc.stderr[-2000:]
    else:
        assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr[-2000:]


def test_reverse_order_shows_a_missing_barrier(monkeypatch):
    """``GPUAU_EMU_ORDER=reverse`` runs a block's threads from the last: a read of what thread 0 writes, without a
    ``__syncthreads`` between them, sees it in index order only."""
    source = (
        'extern "C" __global__ void k(int* out) {\n'
        "    __shared__ int s;\n"
        "    if (threadIdx.x == 0) s = 42 + blockIdx.x;\n"
        "    out[blockIdx.x * blockDim.x + threadIdx.x] = s;  // a __syncthreads() missing before this read\n"
        "}\n"
    )
    kernel = compile_module(source, name="missing_barrier").get_function("k")
    out = xp.zeros((2, 4), np.int32)
    kernel((2,), (4,), (out,))
    assert out.get().tolist() == [[42] * 4, [43] * 4]
    monkeypatch.setenv("GPUAU_EMU_ORDER", "reverse")
    kernel((2,), (4,), (out,))
    assert out.get()[:, 0].tolist() == [42, 43] and out.get()[:, 1:].tolist() != [[42] * 3, [43] * 3]
