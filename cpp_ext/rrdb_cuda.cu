// CUDA kernel of f2n::rrdb: cuDNN convolutions without bias, then one fused pass per
// convolution that adds the bias, applies LeakyReLU or the scaled residual and writes
// into the (strided) channel slice of the block buffer. Only c10 CUDA headers are
// used (not ATen/cuda/CUDAContext.h) so that a toolkit without cuSPARSE/cuBLAS
// headers can build it.
#include "rrdb_ops.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAMacros.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>

namespace f2n {
namespace {

constexpr int kThreads = 256;

// Element i of a contiguous (N, C, H, W) tensor, addressed in a tensor whose
// per-sample block (C, H, W) is contiguous but whose batch stride may be larger.
__device__ __forceinline__ int64_t strided_index(int64_t i, int64_t sample_numel, int64_t batch_stride) {
  return (i / sample_numel) * batch_stride + i % sample_numel;
}

template <typename scalar_t>
__global__ void bias_leaky_relu_kernel(const scalar_t* __restrict__ conv, const scalar_t* __restrict__ bias,
                                       scalar_t* __restrict__ dst, int64_t numel, int64_t channels, int64_t hw,
                                       int64_t dst_batch_stride, float slope) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t sample_numel = channels * hw;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel; i += int64_t(blockDim.x) * gridDim.x) {
    const opmath_t v = opmath_t(conv[i]) + opmath_t(bias[(i / hw) % channels]);
    dst[strided_index(i, sample_numel, dst_batch_stride)] = v > opmath_t(0) ? v : v * opmath_t(slope);
  }
}

template <typename scalar_t>
__global__ void bias_residual_kernel(const scalar_t* __restrict__ conv, const scalar_t* __restrict__ bias,
                                     const scalar_t* __restrict__ skip, scalar_t* __restrict__ dst, int64_t numel,
                                     int64_t channels, int64_t hw, int64_t skip_batch_stride,
                                     int64_t dst_batch_stride, float scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t sample_numel = channels * hw;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel; i += int64_t(blockDim.x) * gridDim.x) {
    const opmath_t v = opmath_t(conv[i]) + opmath_t(bias[(i / hw) % channels]);
    const opmath_t s = opmath_t(skip[strided_index(i, sample_numel, skip_batch_stride)]);
    dst[strided_index(i, sample_numel, dst_batch_stride)] = s + opmath_t(scale) * v;
  }
}

// Channel slices of an NCHW buffer keep each sample's (C, H, W) block contiguous.
void check_sample_contiguous(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.stride(3) == 1 && t.stride(2) == t.size(3) && t.stride(1) == t.size(2) * t.size(3),
              "f2n::rrdb (CUDA): ", what, " must have a contiguous (C, H, W) block per sample, got strides ",
              t.strides());
}

// The SM count of each device, queried on its first launch only (0: not queried yet).
// Two threads may both query a device first; they store the same value.
int sm_count(int device) {
  static std::atomic<int> counts[C10_COMPILE_TIME_MAX_GPUS];
  TORCH_CHECK(device >= 0 && device < C10_COMPILE_TIME_MAX_GPUS, "f2n::rrdb (CUDA): device index ", device,
              " out of range");
  int count = counts[device].load(std::memory_order_relaxed);
  if (count == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    counts[device].store(count, std::memory_order_relaxed);
  }
  return count;
}

unsigned int grid_for(int64_t numel, int device) {
  const int64_t max_blocks = int64_t(sm_count(device)) * 32;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>((numel + kThreads - 1) / kThreads, max_blocks)));
}

void cuda_bias_leaky_relu(const at::Tensor& conv_raw, const at::Tensor& bias, const at::Tensor& dst) {
  const auto conv = conv_raw.contiguous();
  check_sample_contiguous(dst, "dst");
  const int64_t numel = conv.numel();
  if (numel == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, conv.scalar_type(), "f2n_bias_leaky_relu", [&] {
    bias_leaky_relu_kernel<scalar_t><<<grid_for(numel, conv.get_device()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        conv.const_data_ptr<scalar_t>(), bias.const_data_ptr<scalar_t>(), dst.mutable_data_ptr<scalar_t>(), numel,
        conv.size(1), conv.size(2) * conv.size(3), dst.stride(0), static_cast<float>(kLeakySlope));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void cuda_bias_residual(const at::Tensor& conv_raw, const at::Tensor& bias, const at::Tensor& skip,
                        const at::Tensor& dst) {
  const auto conv = conv_raw.contiguous();
  check_sample_contiguous(skip, "skip");
  check_sample_contiguous(dst, "dst");
  const int64_t numel = conv.numel();
  if (numel == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, conv.scalar_type(), "f2n_bias_residual", [&] {
    bias_residual_kernel<scalar_t><<<grid_for(numel, conv.get_device()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        conv.const_data_ptr<scalar_t>(), bias.const_data_ptr<scalar_t>(), skip.const_data_ptr<scalar_t>(),
        dst.mutable_data_ptr<scalar_t>(), numel, conv.size(1), conv.size(2) * conv.size(3), skip.stride(0),
        dst.stride(0), static_cast<float>(kResidualScale));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

const Epilogue cuda_epilogue{/*bias_in_conv=*/false, &cuda_bias_leaky_relu, &cuda_bias_residual};

void check_biases(const at::Tensor& x, at::TensorList biases) {
  for (const auto& b : biases) {
    TORCH_CHECK(b.is_contiguous() && b.scalar_type() == x.scalar_type(),
                "f2n::rrdb (CUDA): biases must be contiguous and of the input dtype ", x.scalar_type(), ", got ",
                b.scalar_type());
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rrdb_cuda(const at::Tensor& x, at::TensorList weights,
                                                                      at::TensorList biases) {
  const c10::cuda::CUDAGuard guard(x.device());
  check_biases(x, biases);
  return rrdb_forward(x, weights, biases, cuda_epilogue);
}

at::Tensor rrdb_inference_cuda(const at::Tensor& x, at::TensorList weights, at::TensorList biases) {
  const c10::cuda::CUDAGuard guard(x.device());
  check_biases(x, biases);
  return rrdb_inference_forward(x, weights, biases, cuda_epilogue);
}

}  // namespace
}  // namespace f2n

TORCH_LIBRARY_IMPL(f2n, CUDA, m) {
  m.impl("rrdb", &f2n::rrdb_cuda);
  m.impl("rrdb_inference", &f2n::rrdb_inference_cuda);
}
