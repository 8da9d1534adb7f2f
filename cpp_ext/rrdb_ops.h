// Fused residual-in-residual dense block (RRDB) of ESRGAN: shared forward skeleton.
// The plain PyTorch block in f2n/nets/rrdbnet.py is the specification of this op.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <tuple>

namespace f2n {

constexpr double kLeakySlope = 0.2;
constexpr double kResidualScale = 0.2;

// What a device adds after each 3x3 convolution. `conv` is the raw convolution
// output (bias already added when `bias_in_conv`); `dst` may be a strided channel
// slice of the block's feature buffer, so writing it is the only copy made.
struct Epilogue {
  bool bias_in_conv;
  // dst <- leaky_relu(conv + bias)
  void (*bias_leaky_relu)(const at::Tensor& conv, const at::Tensor& bias, const at::Tensor& dst);
  // dst <- skip + kResidualScale * (conv + bias)
  void (*bias_residual)(const at::Tensor& conv, const at::Tensor& bias, const at::Tensor& skip,
                        const at::Tensor& dst);
};

// Returns (out, buf1, buf2, buf3): out = x + 0.2 * rdb3(rdb2(rdb1(x))); buf_k is the
// (N, nf + 4 gc, H, W) buffer of dense block k: its input, then the four grown
// feature maps after LeakyReLU. The buffers are what backward needs.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rrdb_forward(
    const at::Tensor& x, at::TensorList weights, at::TensorList biases, const Epilogue& epilogue);

// Inference: the same output with two buffers used in turn (block k+1 overwrites
// block k-1's buffer), so the peak is no higher than the plain block's.
at::Tensor rrdb_inference_forward(const at::Tensor& x, at::TensorList weights, at::TensorList biases,
                                  const Epilogue& epilogue);

}  // namespace f2n
