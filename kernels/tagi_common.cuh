// Shared by every TAGI kernel file: the floating type, kernel names, window geometry, math helpers.
//
// Each kernel file is compiled once per floating type. By default `real` is float and the
// extern "C" kernel names end in _f32; with TAGI_DOUBLE defined, `real` is double and they end
// in _f64. CuPy (tagi/backends/cupy_backend.py) and the CPU test harness (tests/cuda_cpu/) find
// the kernels by these plain names.
//
// Layouts (docs/math.md §1): images NCHW, flat index ((b*C + c)*H + y)*W + x; vectors (B, N) row-major;
// conv weights (C_out, C_in, K, K); linear weights (N_out, N_in). Sizes fit in int (< 2^31 elements).
#ifndef TAGI_COMMON_CUH
#define TAGI_COMMON_CUH

#ifdef TAGI_DOUBLE
typedef double real;
#define TAGI_NAME(name) name##_f64
#else
typedef float real;
#define TAGI_NAME(name) name##_f32
#endif

__device__ __forceinline__ real square(real x) { return x * x; }

// Standard normal CDF Phi(x), in the precision of x.
__device__ __forceinline__ float normal_cdf(float x) { return normcdff(x); }
__device__ __forceinline__ double normal_cdf(double x) { return normcdf(x); }

// Index of this thread in a one-dimensional launch (one thread per element).
__device__ __forceinline__ int element_index() { return blockIdx.x * blockDim.x + threadIdx.x; }

// A square kernel x kernel window sliding over a (channels, height, width) map (docs/math.md §3.3):
// output (oy, ox) reads input row oy*stride + ky - pad and column ox*stride + kx - pad for
// ky, kx < kernel; reads outside the map are padding (zero mean, zero variance). `pad` is the
// padding before the first row/column; the padding after the last one only shows in out_height
// and out_width, which the host computes (tagi.geometry.Window2d).
// A cell of a kernel x kernel patch (see Window::patch_cell).
struct PatchCell {
  int offset;  // flat offset from the window's top-left input cell: (c*height + ky)*width + kx
  int ky, kx;  // row and column within the window
};

// Where a window lies in the input (see Window::window_origin); it may start in the padding.
struct WindowOrigin {
  int index;     // flat NCHW index of its top-left cell (sample b, channel 0)
  int iy0, ix0;  // that cell's row oy*stride - pad and column ox*stride - pad
};

struct Window {
  int channels, height, width, kernel, stride, pad, out_height, out_width;

  __device__ int in_size() const { return height * width; }
  __device__ int out_size() const { return out_height * out_width; }
  __device__ int patch_size() const { return channels * kernel * kernel; }

  // Patch cell k = (c*kernel + ky)*kernel + kx.
  __device__ PatchCell patch_cell(int k) const {
    const int kk = kernel * kernel, c = k / kk, ky = k % kk / kernel, kx = k % kernel;
    return {(c * height + ky) * width + kx, ky, kx};
  }

  // Window l = oy*out_width + ox of sample b.
  __device__ WindowOrigin window_origin(int b, int l) const {
    const int iy0 = l / out_width * stride - pad, ix0 = l % out_width * stride - pad;
    return {(b * channels * height + iy0) * width + ix0, iy0, ix0};
  }

  // Flat NCHW index of a patch cell of a window, or -1 where it is padding.
  __device__ int input_index(WindowOrigin window, PatchCell cell) const {
    const int iy = window.iy0 + cell.ky, ix = window.ix0 + cell.kx;
    return iy < 0 || iy >= height || ix < 0 || ix >= width ? -1 : window.index + cell.offset;
  }

  // The transpose: the window l = oy*out_width + ox whose kernel cell (ky, kx) reads input row
  // iy, column ix, given ty = iy + pad - ky and tx = ix + pad - kx (so oy = ty / stride), or -1
  // where there is none (the stride skips it, or the window would lie outside the output map).
  __device__ int output_position(int ty, int tx) const {
    if (ty < 0 || tx < 0) return -1;
    if (stride != 1) {
      if (ty % stride != 0 || tx % stride != 0) return -1;
      ty /= stride;
      tx /= stride;
    }
    return ty >= out_height || tx >= out_width ? -1 : ty * out_width + tx;
  }
};

#endif  // TAGI_COMMON_CUH
