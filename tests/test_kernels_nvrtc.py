"""Every ``.cu`` under gpuau/kernels/ compiles with NVRTC for sm_80 and sm_90 (and sm_100), with each define set
its ``// defines:`` lines declare, without register spills beyond what its ``// spills:`` line allows
(none by default) or shared memory over 48 KB."""
import pytest

from gpuau.kernels import loader
from gpuau.kernels.nvrtc import ARCHS, KernelCompileError, compile_check, parse_ptxas_log

pytest.importorskip("cuda.bindings.nvrtc", reason="NVRTC compile checks need gpuau's [nvrtc] extra")

SOURCES = sorted(p.stem for p in loader.KERNEL_DIR.glob("*.cu"))
CASES = [
    pytest.param(source, defines, arch, id=f"{source}-{arch}-{'-'.join(f'{k}={v}' for k, v in defines) or 'default'}")
    for source in SOURCES
    for defines in loader.declared_defines(source)
    for arch in ARCHS
]


def test_kernel_sources_found():
    assert "warp" in SOURCES


@pytest.mark.parametrize("source, defines, arch", CASES)
def test_kernel_compiles(source, defines, arch):
    result = compile_check(source, defines, arch)
    assert result.ptx and result.cubin
    assert result.kernels, f"{source}.cu: ptxas reported no kernels"
    # float32 subnormals kept, as in the emulator and Numba (no -ftz=true); CUDA's math library seeds some of its
    # iterations with the approximate reciprocal (square root), which exists only as .approx.ftz
    flushed = [line for line in result.ptx.decode().splitlines() if ".ftz." in line and ".approx.ftz." not in line]
    assert flushed == []
    allowed = loader.declared_spills(source)
    for kernel in result.kernels.values():
        assert max(kernel.spill_stores, kernel.spill_loads) <= allowed


@pytest.mark.parametrize("source", SOURCES)
def test_kernel_compiles_for_blackwell(source):
    """The [cuda12] extra's NVRTC (12.8 or newer) builds every source for sm_100 too (B200): an NVRTC that could not
    left the compile to CuPy, which flushes subnormals. One define set each: the code is the same for all."""
    result = compile_check(source, loader.declared_defines(source)[0], "sm_100")
    assert result.cubin and result.kernels


def test_ccnf_response_shared_memory_is_what_its_wrapper_counts():
    """The wrapper refuses a map its block's shared memory cannot hold by counting it: as ptxas lays it out (the
    doubles after the floats aligned to 8 bytes; 4 bytes short before, so a map just over 48 KiB passed it)."""
    from gpuau.kernels.ccnf_response import _shared_bytes

    for defines in loader.declared_defines("ccnf_response"):
        d = {name: int(value) for name, value in defines}
        (kernel,) = compile_check("ccnf_response", defines, "sm_90").kernels.values()
        assert kernel.shared_bytes == _shared_bytes(d["RESP_H"], d["PATCH_H"], d["PATCH_W"], d["NEURONS"])


def test_warp_kernels_resources():
    result = compile_check("warp", arch="sm_90")
    assert set(result.kernels) == {f"{k}_{t}" for k in ("warp_affine", "warp_affine_masked", "warp_mask_chain",
                                                        "validator_faces") for t in ("u8", "f32")}
    assert all(k.registers <= 64 for k in result.kernels.values())
    # only the validator's faces share their mean and scale through shared memory
    assert {name: k.shared_bytes for name, k in result.kernels.items() if k.shared_bytes} == {
        "validator_faces_u8": 8, "validator_faces_f32": 8}
    assert b"fma.rn" not in result.ptx  # --fmad=false: rounding as in the emulator and Numba


@pytest.fixture
def kernel_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "KERNEL_DIR", tmp_path)
    return tmp_path


def test_declared_defines_and_errors(kernel_dir):
    (kernel_dir / "big.cu").write_text(
        "// Too much shared memory when N is large.\n"
        "// defines: N=1024\n"
        "// defines: N=16384 EXTRA=1\n"
        'extern "C" __global__ void k(float* out) {\n'
        "    __shared__ float s[N];\n"
        "    s[threadIdx.x] = threadIdx.x; __syncthreads(); out[threadIdx.x] = s[N - 1 - threadIdx.x];\n"
        "}\n"
    )
    assert loader.declared_defines("big") == [(("N", "1024"),), (("EXTRA", "1"), ("N", "16384"))]
    ok = compile_check("big", {"N": 1024}, "sm_80")
    assert ok.kernels["k"].shared_bytes == 4096
    with pytest.raises(KernelCompileError, match="too much shared data|static shared memory"):
        compile_check("big", {"N": 16384}, "sm_80")
    with pytest.raises(KernelCompileError, match="undefined"):
        compile_check("big", {}, "sm_80")


def test_declared_spills(kernel_dir):
    plain = 'extern "C" __global__ void k(float* out) { out[0] = 1.0f; }\n'
    (kernel_dir / "plain.cu").write_text(plain)
    (kernel_dir / "budget.cu").write_text("// A serial tail.\n// spills: 32 bytes (why)\n" + plain)
    assert loader.declared_spills("plain") == 0 and loader.declared_spills("budget") == 32


def test_parse_ptxas_log_spills():
    log = (
        "ptxas info    : Compiling entry function 'a' for 'sm_90'\n"
        "ptxas         .     16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n"
        "ptxas info    : Used 255 registers, used 1 barriers, 2048 bytes smem\n"
        "ptxas info    : Compiling entry function 'b' for 'sm_90'\n"
        "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 12 registers, used 0 barriers\n"
    )
    k = parse_ptxas_log(log)
    assert (k["a"].registers, k["a"].spill_stores, k["a"].spill_loads, k["a"].shared_bytes) == (255, 8, 4, 2048)
    assert (k["b"].registers, k["b"].spill_stores, k["b"].shared_bytes) == (12, 0, 0)


class _FakeCupy:
    """What the loader asks of CuPy: a device's compute capability, and a RawModule from a file or from code."""

    def __init__(self):
        self.modules = []
        fake = self

        class Device:
            compute_capability = "90"

            def __init__(self, device_id):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                pass

        class RawModule:
            def __init__(self, **kwargs):
                fake.modules.append(kwargs)

            def compile(self):
                pass

        self.cuda = type("cuda", (), {"Device": Device})
        self.RawModule = RawModule


def test_the_gpu_loads_the_checked_compile(monkeypatch, tmp_path, caplog):
    """On CUDA the loader compiles a source itself, with exactly the options checked here, and hands CuPy the CUBIN
    (CuPy's own compile appends -ftz=true, which flushes float32 subnormals to zero); without NVRTC it falls back to
    CuPy's compile and says what that costs."""
    import logging
    import sys

    from gpuau.kernels import nvrtc

    cupy = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setenv("GPUAU_CACHE", str(tmp_path))
    loader._load.cache_clear()
    loader._load("cuda", 0, "similarity", ())
    (path,) = [m["path"] for m in cupy.modules]
    assert path.startswith(str(tmp_path / "cubin")) and open(path, "rb").read() == compile_check("similarity").cubin

    (tmp_path / "cubin").rename(tmp_path / "cubins")
    (tmp_path / "cubin").write_text("")  # an unwritable cache: a file where the folder goes
    loader._load.cache_clear()
    loader._load("cuda", 0, "similarity", ())
    assert open(cupy.modules[-1]["path"], "rb").read() == compile_check("similarity").cubin

    def no_nvrtc(*args, **kwargs):
        raise KernelCompileError("NVRTC is not installed") from ImportError("cuda.bindings")

    monkeypatch.setattr(nvrtc, "compile_source", no_nvrtc)
    loader._load.cache_clear()
    with caplog.at_level(logging.WARNING, logger="gpuau"):
        loader._load("cuda", 0, "warp", ())
    assert cupy.modules[-1] == {"code": loader.kernel_source("warp"), "options": loader.NVRTC_OPTIONS}
    assert "flushes float32 subnormals to zero" in caplog.text and "[cuda12] / [cuda13] extra brings that NVRTC" in caplog.text
    loader._load.cache_clear()
