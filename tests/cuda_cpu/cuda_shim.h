// Runs CUDA kernel source unchanged on the CPU, for tests: g++ -std=c++20 -include cuda_shim.h.
//
// The CUDA built-ins become plain C++: __global__/__device__ functions are ordinary functions,
// __shared__ variables are function statics (one block runs at a time, so its threads share
// them), threadIdx/blockIdx/blockDim/gridDim are globals set by the launcher, and the math
// intrinsics map to <cmath>.
//
// Launch semantics: the blocks of a grid run one after another; the threads of a block are
// fibers on one OS thread (switched with _setjmp/_longjmp, see fiber_main). A fiber runs until it reaches __syncthreads() or returns;
// a barrier opens once every fiber that has not returned waits at it (exited threads no longer
// count, as on the GPU). All fibers waiting at one barrier must wait at the same
// __syncthreads() call, else the launch fails with "divergent __syncthreads". Because every
// fiber runs to its barrier before the next starts, a missing barrier shows up as a wrong result.
//
// TAGI_CPU_EXPORT(kernel) defines two C entry points for ctypes:
//   int tagi_cpu_launch_<kernel>(const unsigned dims[6], void** args)   grid xyz, block xyz;
//       args[i] points at the i-th argument's value (cudaLaunchKernel's convention); returns 0,
//       or 1 with the message in tagi_cpu_error();
//   const char* tagi_cpu_signature_<kernel>()   argument types, e.g. "f*,f*,i,f" (f float,
//       d double, i int, * pointer), for the caller to check what it passes.
#pragma once

#undef _FORTIFY_SOURCE  // _longjmp between fiber stacks is intended
#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <deque>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

struct uint3 {
  unsigned x = 1, y = 1, z = 1;
};
using dim3 = uint3;

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

using std::exp;
using std::fabs;
using std::fmax;
using std::fmin;
using std::isfinite;
using std::isnan;
using std::max;
using std::min;
using std::sqrt;

inline float normcdff(float x) { return 0.5f * std::erfc(-x * 0.70710678118654752f); }
inline double normcdf(double x) { return 0.5 * std::erfc(-x * 0.70710678118654752); }

template <class T>
T __ldg(const T* p) { return *p; }
template <class T>
T __ldcg(const T* p) { return *p; }
inline int atomicAdd(int* address, int value) { return std::atomic_ref<int>(*address).fetch_add(value); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

namespace tagi_cpu {

struct Fiber {
  ucontext_t context;  // enters the fiber's stack the first time (set up once per slot)
  jmp_buf resume;      // where the fiber continues: after a barrier, or parked after a thread
  uint3 index;
  bool started;  // runs a thread of the current block
  bool done;     // that thread returned
  bool parked;   // waits in fiber_main for its next thread
  const char* barrier_file;  // the __syncthreads() this fiber waits at
  int barrier_line;
};

inline constexpr std::size_t kStackBytes = 1 << 17;
inline jmp_buf scheduler;  // where a fiber goes back to at a barrier or at its thread's end
inline Fiber* running = nullptr;
inline std::function<void()> kernel_call;
inline std::string error;

// Switches use _setjmp/_longjmp (no signal-mask system call), so a switch is a few register
// moves; ucontext only enters a slot's stack the first time. A fiber runs thread after thread:
// at a thread's end it parks, and the next block's thread of its slot resumes it there.
[[noreturn]] inline void fiber_main() {
  for (;;) {
    kernel_call();
    running->done = running->parked = true;
    if (!_setjmp(running->resume)) _longjmp(scheduler, 1);
  }
}

inline void sync_threads(const char* file, int line) {
  running->barrier_file = file;
  running->barrier_line = line;
  if (!_setjmp(running->resume)) _longjmp(scheduler, 1);
}

// Runs fiber f until its thread waits at a barrier or returns.
inline void resume(Fiber& f) {
  running = &f;
  threadIdx = f.index;
  if (_setjmp(scheduler)) return;
  if (f.started) _longjmp(f.resume, 1);  // past a barrier
  f.started = true;
  if (f.parked) {                        // a new thread on a parked fiber
    f.parked = false;
    _longjmp(f.resume, 1);
  }
  setcontext(&f.context);                // a fresh fiber, or one a failed launch left behind
}

// Runs one block: rounds of "resume every live fiber until it waits or returns".
inline bool run_block(std::deque<Fiber>& fibers, std::size_t threads) {
  for (std::size_t t = 0; t < threads; ++t) {
    Fiber& f = fibers[t];
    if (!f.parked) makecontext(&f.context, fiber_main, 0);
    f.started = f.done = false;
    f.index = {unsigned(t % blockDim.x), unsigned(t / blockDim.x % blockDim.y),
               unsigned(t / (blockDim.x * blockDim.y))};
  }
  for (;;) {
    const Fiber* waiting = nullptr;
    for (std::size_t t = 0; t < threads; ++t) {
      Fiber& f = fibers[t];
      if (f.done) continue;
      resume(f);
      if (f.done) continue;
      if (waiting && (f.barrier_line != waiting->barrier_line ||
                      std::strcmp(f.barrier_file, waiting->barrier_file) != 0)) {
        error = "divergent __syncthreads: " + std::string(waiting->barrier_file) + ":" +
                std::to_string(waiting->barrier_line) + " and " + f.barrier_file + ":" +
                std::to_string(f.barrier_line);
        return false;
      }
      waiting = &f;
    }
    if (!waiting) return true;
  }
}

template <class... P, std::size_t... I>
int launch(void (*kernel)(P...), const unsigned* dims, void** args, std::index_sequence<I...>) {
  std::tuple<P...> values{*static_cast<P*>(args[I])...};
  kernel_call = [&] { std::apply(kernel, values); };
  gridDim = {dims[0], dims[1], dims[2]};
  blockDim = {dims[3], dims[4], dims[5]};
  const std::size_t threads = std::size_t(blockDim.x) * blockDim.y * blockDim.z;
  static std::vector<std::vector<char>> stacks;
  static std::deque<Fiber> fibers;  // one per thread slot, kept (never moved) between launches
  while (fibers.size() < threads) {
    stacks.emplace_back(kStackBytes);
    fibers.emplace_back();
    getcontext(&fibers.back().context);
    fibers.back().context.uc_stack = {stacks.back().data(), 0, stacks.back().size()};
    fibers.back().context.uc_link = nullptr;
    fibers.back().parked = false;
  }
  error.clear();
  for (unsigned z = 0; z < gridDim.z; ++z)
    for (unsigned y = 0; y < gridDim.y; ++y)
      for (unsigned x = 0; x < gridDim.x; ++x) {
        blockIdx = {x, y, z};
        if (!run_block(fibers, threads)) return 1;
      }
  return 0;
}

template <class... P>
int launch(void (*kernel)(P...), const unsigned* dims, void** args) {
  return launch(kernel, dims, args, std::index_sequence_for<P...>{});
}

template <class T>
std::string type_code() {
  using U = std::remove_cv_t<std::remove_pointer_t<T>>;
  const char* base = std::is_same_v<U, float> ? "f" : std::is_same_v<U, double> ? "d"
                     : std::is_same_v<U, int> ? "i" : "?";
  return std::string(base) + (std::is_pointer_v<T> ? "*" : "");
}

template <class... P>
std::string signature(void (*)(P...)) {
  std::string codes;
  ((codes += (codes.empty() ? "" : ",") + type_code<P>()), ...);
  return codes;
}

}  // namespace tagi_cpu

#define __syncthreads() tagi_cpu::sync_threads(__FILE__, __LINE__)

// The indirection expands a TAGI_NAME(...) argument before its name is pasted.
#define TAGI_CPU_EXPORT(kernel) TAGI_CPU_EXPORT_NAMED(kernel)
#define TAGI_CPU_EXPORT_NAMED(kernel)                                                   \
  extern "C" int tagi_cpu_launch_##kernel(const unsigned* dims, void** args) {          \
    return tagi_cpu::launch(kernel, dims, args);                                        \
  }                                                                                     \
  extern "C" const char* tagi_cpu_signature_##kernel() {                                \
    static const std::string codes = tagi_cpu::signature(kernel);                       \
    return codes.c_str();                                                               \
  }

extern "C" const char* tagi_cpu_error() { return tagi_cpu::error.c_str(); }
