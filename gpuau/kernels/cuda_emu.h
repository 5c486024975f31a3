// CPU emulation of the part of CUDA's execution model that gpuau's kernels use.
//
// gpuau/kernels/emulator.py force-includes this header (g++ -include cuda_emu.h) in front of a
// kernel source (.cu), compiles the result as C++20 into a shared library and launches kernels
// through the extern "C" entry points it appends (see GPUAU_EMU_ENTRY below).
//
// Execution model
//   * `__shared__` arrays are plain static storage, so blocks of a source that has any run one
//     after another; blocks of sources without __shared__ run in parallel on OS threads.
//   * Kernel sources that call __syncthreads run the threads of a block as fibers (each with its
//     own stack) that meet at every __syncthreads (FiberBlock below).
//   * Other kernel sources run the threads of a block in a plain loop.
//   * threadIdx/blockIdx/blockDim/gridDim are thread_local (set for the running thread).
// Not provided: dynamic `extern __shared__`, warp intrinsics (__shfl*, __ballot*, ...), cooperative
// groups, textures, streams.  Fast-math intrinsics (__expf, rsqrtf, __fdividef) are computed
// exactly here, so they can differ from the GPU by a few ulp.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <csetjmp>
#include <ucontext.h>

#define GPUAU_EMULATOR 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __shared__ static
#define __constant__ static const
#define __launch_bounds__(...)

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};

namespace gpuau_emu {

// The threads of one block as fibers on the launching OS thread.  They run round-robin, each
// until its next __syncthreads (which yields to the scheduler) or its return, so when a round
// ends every live thread waits at the same barrier: the barrier semantics without waking hundreds
// of OS threads at every __syncthreads.  A thread that returns stops counting, as exited threads
// do on the GPU.  Each fiber has its own stack; it is created once with makecontext and is then
// switched with _setjmp/_longjmp (no signal-mask system call per switch).
class FiberBlock {
public:
    static constexpr std::size_t kStackBytes = 256 * 1024;  // per thread; only touched pages cost

    void run(int n, const dim3& block, const std::function<void()>& body, bool reverse) {
        while ((int)fibers_.size() < n) create();
        body_ = &body;
        for (int t = 0; t < n; ++t) fibers_[t]->done = false;
        for (int live = n; live > 0;) {
            for (int k = 0; k < n; ++k) {
                const int t = reverse ? n - 1 - k : k;
                Fiber& f = *fibers_[t];
                if (f.done) continue;
                threadIdx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                current_ = t;
                if (_setjmp(scheduler_) == 0) _longjmp(f.resume, 1);
                if (f.done) --live;
            }
        }
    }

    // __syncthreads: back to the scheduler, which resumes this thread in the next round.
    void yield() {
        if (_setjmp(fibers_[current_]->resume) == 0) _longjmp(scheduler_, 1);
    }

private:
    struct Fiber {
        std::unique_ptr<char[]> stack{new char[kStackBytes]};
        ucontext_t context;
        jmp_buf resume;
        bool done = true;
    };

    void create() {
        fibers_.emplace_back(new Fiber);
        Fiber& f = *fibers_.back();
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.get();
        f.context.uc_stack.ss_size = kStackBytes;
        f.context.uc_link = nullptr;
        creating_ = this;
        makecontext(&f.context, &FiberBlock::trampoline, 0);
        swapcontext(&create_return_, &f.context);  // runs the trampoline up to its first _setjmp
    }

    // Life of one fiber: park, then run the body once per block it is resumed for.
    static void trampoline() {
        FiberBlock* const self = creating_;
        Fiber* const f = self->fibers_.back().get();
        if (_setjmp(f->resume) == 0) swapcontext(&f->context, &self->create_return_);
        for (;;) {
            (*self->body_)();
            f->done = true;
            if (_setjmp(f->resume) == 0) _longjmp(self->scheduler_, 1);
        }
    }

    static inline thread_local FiberBlock* creating_ = nullptr;
    std::vector<std::unique_ptr<Fiber>> fibers_;
    ucontext_t create_return_;
    jmp_buf scheduler_;
    const std::function<void()>* body_ = nullptr;
    int current_ = 0;
};

inline thread_local FiberBlock* current_block = nullptr;

inline std::mutex& launch_mutex() {
    static std::mutex m;
    return m;
}

// How a launch runs the threads of its blocks (chosen per source by emulator.py).
enum Mode : int {
    kLoop = 0,          // blocks in order, threads of a block in a loop (source uses __shared__)
    kFibers = 1,        // blocks in order, threads as fibers meeting at __syncthreads
    kParallelLoop = 2,  // blocks spread over OS threads, threads in a loop (no __shared__ at all)
};

inline void run_threads_in_loop(const dim3& block, const std::function<void()>& body, bool reverse) {
    const unsigned n = block.x * block.y * block.z;
    for (unsigned k = 0; k < n; ++k) {
        const unsigned t = reverse ? n - 1 - k : k;
        threadIdx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
        body();
    }
}

// GPUAU_EMU_ORDER=reverse: each block's threads (and, between barriers, their steps) run from the last to the
// first.  A missing __syncthreads where a thread reads what a lower-numbered one writes, or a kernel whose result
// depends on which thread writes last, then gives other numbers than in the default order.
inline bool reverse_order() {
    const char* env = std::getenv("GPUAU_EMU_ORDER");
    return env != nullptr && std::strcmp(env, "reverse") == 0;
}

inline unsigned worker_count() {
    const char* env = std::getenv("GPUAU_EMU_THREADS");
    const int n = env ? std::atoi(env) : (int)std::thread::hardware_concurrency();
    return n > 0 ? (unsigned)n : 1u;
}

inline int launch_grid(const unsigned* g, const unsigned* b, Mode mode, const std::function<void()>& body) {
    const dim3 grid(g[0], g[1], g[2]), block(b[0], b[1], b[2]);
    const long n = (long)block.x * block.y * block.z;
    if (n < 1 || n > 1024 || block.z > 64 || grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.y > 65535 ||
        grid.z > 65535)
        return 1;
    std::lock_guard<std::mutex> lock(launch_mutex());  // blocks share static __shared__ storage
    const unsigned long n_blocks = (unsigned long)grid.x * grid.y * grid.z;
    const bool reverse = reverse_order();
    std::atomic<unsigned long> next{0};
    auto worker = [&] {
        blockDim = block;
        gridDim = grid;
        for (unsigned long k; (k = next.fetch_add(1)) < n_blocks;) {
            const unsigned long i = reverse ? n_blocks - 1 - k : k;
            blockIdx = uint3{(unsigned)(i % grid.x), (unsigned)((i / grid.x) % grid.y), (unsigned)(i / grid.x / grid.y)};
            run_threads_in_loop(block, body, reverse);
        }
    };
    if (mode == kParallelLoop) {
        const unsigned workers = (unsigned)std::min<unsigned long>(worker_count(), n_blocks);
        std::vector<std::thread> pool;
        for (unsigned w = 1; w < workers; ++w) pool.emplace_back(worker);
        worker();
        for (auto& t : pool) t.join();
    } else if (mode == kLoop) {
        worker();
    } else {
        static FiberBlock fibers;
        current_block = &fibers;
        blockDim = block;
        gridDim = grid;
        for (unsigned long k = 0; k < n_blocks; ++k) {
            const unsigned long i = reverse ? n_blocks - 1 - k : k;
            blockIdx = uint3{(unsigned)(i % grid.x), (unsigned)((i / grid.x) % grid.y), (unsigned)(i / grid.x / grid.y)};
            fibers.run((int)n, block, body, reverse);
        }
    }
    return 0;
}

// Kernel parameter description exported to Python: kind (0 pointer, 1 signed int, 2 unsigned
// int, 3 floating point) * 256 + sizeof.
template <typename P>
constexpr int param_code() {
    using T = std::remove_cv_t<P>;
    const int kind = std::is_pointer_v<T> ? 0 : std::is_floating_point_v<T> ? 3 : std::is_signed_v<T> ? 1 : 2;
    return kind * 256 + (int)sizeof(T);
}

template <typename... P>
int describe(void (*)(P...), int* codes) {
    const int c[] = {param_code<P>()..., 0};
    for (std::size_t i = 0; i < sizeof...(P); ++i) codes[i] = c[i];
    return (int)sizeof...(P);
}

template <typename... P, std::size_t... I>
void call_unpacked(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<P>*>(args[I])...);
}

template <typename... P>
int launch(void (*kernel)(P...), const unsigned* grid, const unsigned* block, void** args, Mode mode) {
    const std::function<void()> body = [&] { call_unpacked(kernel, args, std::index_sequence_for<P...>{}); };
    return launch_grid(grid, block, mode, body);
}

}  // namespace gpuau_emu

// One extern "C" launcher and describer per kernel; emulator.py appends these lines.
#define GPUAU_EMU_ENTRY(NAME, MODE)                                                              \
    extern "C" int gpuau_launch_##NAME(const unsigned* grid, const unsigned* block, void** args) { \
        return gpuau_emu::launch(&NAME, grid, block, args, gpuau_emu::MODE);                          \
    }                                                                                            \
    extern "C" int gpuau_params_##NAME(int* codes) { return gpuau_emu::describe(&NAME, codes); }

inline void __syncthreads() {
    if (gpuau_emu::current_block == nullptr) {
        std::fprintf(stderr, "gpuau emulator: __syncthreads in a kernel launched without fibers\n");
        std::abort();
    }
    gpuau_emu::current_block->yield();
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
template <typename T>
inline T __ldg(const T* p) { return *p; }

// ---- atomics (return the old value, like CUDA) ----
template <typename T>
inline T atomicAdd(T* address, T value) { return std::atomic_ref<T>(*address).fetch_add(value); }
template <typename T>
inline T atomicSub(T* address, T value) { return std::atomic_ref<T>(*address).fetch_sub(value); }
template <typename T>
inline T atomicExch(T* address, T value) { return std::atomic_ref<T>(*address).exchange(value); }
template <typename T>
inline T atomicCAS(T* address, T compare, T value) {
    std::atomic_ref<T>(*address).compare_exchange_strong(compare, value);
    return compare;
}
namespace gpuau_emu {
// Store `value` unless `keep(old, value)`; return the old value (compare-and-swap loop).
template <typename T, typename Keep>
inline T atomic_replace_unless(T* address, T value, Keep keep) {
    std::atomic_ref<T> a(*address);
    T old = a.load();
    while (!keep(old, value) && !a.compare_exchange_weak(old, value)) {
    }
    return old;
}
}  // namespace gpuau_emu
template <typename T>
inline T atomicMax(T* address, T value) {
    return gpuau_emu::atomic_replace_unless(address, value, [](T old, T v) { return !(old < v); });
}
template <typename T>
inline T atomicMin(T* address, T value) {
    return gpuau_emu::atomic_replace_unless(address, value, [](T old, T v) { return !(v < old); });
}

// ---- integer and float math ----
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }

inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0

// Correctly rounded single operations (never contracted into an FMA, on the GPU either).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }

// Bit casts.
inline float __int_as_float(int u) { float x; std::memcpy(&x, &u, sizeof x); return x; }
inline long long __double_as_longlong(double x) { long long u; std::memcpy(&u, &x, sizeof u); return u; }
inline double __longlong_as_double(long long u) { double x; std::memcpy(&x, &u, sizeof x); return x; }

// Conversions; out-of-range values saturate as on the GPU (NaN -> 0).
template <typename F>
inline int gpuau_emu_sat_int(F v) {
    if (v != v) return 0;
    if (v >= (F)2147483647.0) return 2147483647;
    if (v <= (F)-2147483648.0) return (-2147483647 - 1);
    return (int)v;
}
inline int __float2int_rn(float x) { return gpuau_emu_sat_int(std::nearbyint(x)); }
inline int __float2int_rd(float x) { return gpuau_emu_sat_int(std::floor(x)); }
inline int __float2int_ru(float x) { return gpuau_emu_sat_int(std::ceil(x)); }
inline int __float2int_rz(float x) { return gpuau_emu_sat_int(std::trunc(x)); }
inline int __double2int_rn(double x) { return gpuau_emu_sat_int(std::nearbyint(x)); }
inline int __double2int_rd(double x) { return gpuau_emu_sat_int(std::floor(x)); }
inline int __double2int_rz(double x) { return gpuau_emu_sat_int(std::trunc(x)); }
inline float __int2float_rn(int x) { return (float)x; }
inline double __int2double_rn(int x) { return (double)x; }
inline float __uint2float_rn(unsigned x) { return (float)x; }

// Overloads CUDA provides in the global namespace (float versions of floor, exp, ...).
using std::ceil;
using std::exp;
using std::fabs;
using std::floor;
using std::fma;
using std::fmax;
using std::fmin;
using std::log;
using std::nearbyint;
using std::pow;
using std::rint;
using std::round;
using std::sqrt;
using std::trunc;
