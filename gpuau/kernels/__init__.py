"""GPU kernels: ``.cu`` sources, their loader, one Python wrapper per kernel, and the CPU emulator.

Layout
------
``<family>.cu``
    Kernel sources (``warp.cu``, ``ccnf_response.cu``, ``pdm_fit.cu``, ``fhog.cu``, ``pyramid.cu``,
    ``running_median.cu``, ``validator_cnn.cu``, ``pnp.cu``, ``similarity.cu``).  NVRTC-clean: no system
    ``#include``; typedefs under ``#ifdef __CUDACC_RTC__``; kernels declared
    ``extern "C" __global__ void NAME(...)``; static ``__shared__`` sizes from ``#define``s.
``<name>.cuh``
    Device functions shared by several sources (``sgemm_order.cuh``: OpenBLAS's summation orders, for
    ``ccnf_response.cu`` and ``pdm_fit.cu``; ``similarity.cuh``: the similarity transform of a shape to
    another), pulled in with ``#include "<name>.cuh"``: the loader
    inlines them (each once, with ``#line`` directives), so every compiler sees one self-contained text.
``loader.py``
    ``load_module(backend, source, defines)``: the ``#define`` preamble + source, compiled once per
    (device, source, defines): ``cupy.RawModule`` on ``cuda``, :mod:`.emulator` on ``emulated``.
    Build options :data:`loader.NVRTC_OPTIONS` include ``--fmad=false``: write ``fmaf`` where a
    fused multiply-add is meant, so the GPU rounds like the emulator and the Numba twins.
``<name>.py``
    The wrapper ``NAME(backend, ...)`` behind ``backend.kernels.NAME``, decorated with
    ``@loader.on_device`` (it then runs under ``cupy.cuda.Device(backend.device_id)``): validates
    dtypes and contiguity, allocates ``out`` with ``backend.xp``, computes grid and block, launches with
    ``module.get_function(k)(grid, block, (arrays..., np.int32(..), np.float32(..)))``.  Its Numba
    twin ``gpuau/cpu/<name>.py`` takes the same arguments minus ``backend``.
``nvrtc.py``
    ``compile_check(source, defines, arch)``: PTX + CUBIN through NVRTC without a GPU, with ptxas'
    registers / spills / shared memory per kernel; raises on errors, > 48 KB shared, or spills beyond the
    source's ``// spills: N bytes (why)`` budget (none without that line; ``loader.declared_spills``).
``emulator.py`` + ``cuda_emu.h``
    The same ``.cu`` compiled as C++20 by g++ and run on the CPU, on the emulated backend's device arrays.
``emulated_arrays.py``
    The emulated backend's array module: NumPy memory behind CuPy's rules (no implicit conversion to NumPy,
    no host array as a ufunc operand, a function's array argument or a kernel's pointer), so host code that
    would fail on a GPU fails in the tests.

Adding a kernel
---------------
1. ``gpuau/kernels/foo.cu`` with ``extern "C" __global__`` kernels.  If it needs ``#define``s, list
   the define sets to compile-check in its leading comment lines, one per line::

       // defines: PATCH=11 WINDOW=25
       // defines: PATCH=11 WINDOW=15

   ``tests/test_kernels_nvrtc.py`` compiles every ``.cu`` here with each set for sm_80 and sm_90, and
   fails on any register spill unless the file declares a budget and why, in the same comment lines
   (``// spills: 64 bytes (why)``; ``pdm_fit.cu`` does, for its serial update's trig calls).
2. ``gpuau/kernels/foo.py`` with ``@on_device def foo(backend, ...)`` and ``gpuau/cpu/foo.py`` with ``foo(...)``
   (register the module in ``gpuau.device.KERNELS`` if the function name differs from the module).
3. A test taking the ``backend`` fixture (``tests/backends.py``: cpu, emulated, and cuda when a GPU
   exists) that compares ``backend.kernels.foo(...)`` with the NumPy/Numba oracle through
   ``assert_backend_close``; known per-backend gaps go in ``tests/backend_gaps.toml``.

Emulator limits
---------------
* A source that calls ``__syncthreads`` runs each block's threads as fibers (own stacks, switched
  at every barrier; a thread that returns stops counting); one with ``__shared__`` but no barrier
  runs its blocks one at a time, threads in a loop; one with neither spreads its blocks over
  ``GPUAU_EMU_THREADS`` OS threads (default: all cores).  Block size <= 1024 threads.  Races
  between threads are not detected (fibers interleave only at barriers); ``GPUAU_EMU_ORDER=reverse`` runs
  threads and blocks from the last, which shows a missing barrier behind a lower-numbered thread's write.
* Static ``__shared__`` only (it becomes static storage); no dynamic ``extern __shared__``
  (``shared_mem`` must be 0).  ``__constant__`` data must be initialised in the source (no
  ``module.get_global`` to fill it from the host).
* No warp-level intrinsics (``__shfl*``, ``__ballot*``, ``__activemask``), cooperative groups,
  textures, streams or events: a source using them fails to build in the emulator.
* Atomics ``atomicAdd/Sub/Exch/CAS/Max/Min`` for int, unsigned, float (``std::atomic_ref``).
* Math functions come from the host's libm (``expf``, ``logf``, ``powf``) and fast-math intrinsics
  (``__expf``, ``rsqrtf``, ``__fdividef``) are computed exactly, while CUDA's are accurate to a
  few ulp: results using them can differ from the GPU by a few ulp.  Arithmetic (``+ - * /``,
  ``sqrtf``, ``__fmul_rn``, ``__dadd_rn``, ``__double2int_rn`` ...) and ``fmaf`` match the GPU
  bit for bit (both sides build without FMA contraction).
* Kernel arguments: C-contiguous NumPy arrays for pointers, NumPy scalars matching each
  parameter's size and kind (``np.int32`` for ``int``, ``np.float32`` for ``float`` ...); mismatches
  raise instead of being reinterpreted.
* ``GPUAU_EMU_SANITIZE=address`` builds with AddressSanitizer (see :func:`emulator.sanitizer_env`).
"""
