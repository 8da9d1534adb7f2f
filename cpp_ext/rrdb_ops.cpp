// Schema of the f2n::rrdb operator, its device-independent skeleton and the CPU kernel.
#include "rrdb_ops.h"

#include <ATen/ops/add.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/leaky_relu.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>
#include <vector>

namespace f2n {
namespace {

constexpr int64_t kConvsPerBlock = 5;
constexpr int64_t kBlocks = 3;

at::Tensor conv3x3(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  return at::convolution(input, weight, bias, /*stride=*/{1, 1}, /*padding=*/{1, 1}, /*dilation=*/{1, 1},
                         /*transposed=*/false, /*output_padding=*/{0, 0}, /*groups=*/1);
}

void check_inputs(const at::Tensor& x, at::TensorList weights, at::TensorList biases) {
  TORCH_CHECK(x.dim() == 4, "f2n::rrdb: x must be (N, C, H, W), got ", x.dim(), " dims");
  TORCH_CHECK(weights.size() == kBlocks * kConvsPerBlock && biases.size() == weights.size(),
              "f2n::rrdb: expected 15 weights and 15 biases, got ", weights.size(), " and ", biases.size());
  const int64_t nf = x.size(1);
  const int64_t gc = weights[0].size(0);
  for (int64_t i = 0; i < kBlocks * kConvsPerBlock; ++i) {
    const int64_t j = i % kConvsPerBlock;
    const int64_t out_ch = j == kConvsPerBlock - 1 ? nf : gc;
    const auto& w = weights[i];
    TORCH_CHECK(w.dim() == 4 && w.size(0) == out_ch && w.size(1) == nf + j * gc && w.size(2) == 3 && w.size(3) == 3,
                "f2n::rrdb: weight ", i, " must be (", out_ch, ", ", nf + j * gc, ", 3, 3), got ", w.sizes());
    TORCH_CHECK(biases[i].dim() == 1 && biases[i].size(0) == out_ch, "f2n::rrdb: bias ", i, " must be (", out_ch,
                "), got ", biases[i].sizes());
  }
}

// One dense block on `buf`, whose first nf channels hold the block input; the grown
// maps are written into the buffer itself and the block output into `dst`.
void dense_block(const at::Tensor& buf, at::TensorList w, at::TensorList b, int64_t nf, int64_t gc,
                 const at::Tensor& dst, const Epilogue& ep) {
  auto conv_bias = [&](int64_t i) { return ep.bias_in_conv ? std::optional<at::Tensor>(b[i]) : std::nullopt; };
  for (int64_t i = 0; i < kConvsPerBlock - 1; ++i) {
    const int64_t in_ch = nf + i * gc;
    const auto conv = conv3x3(buf.narrow(1, 0, in_ch), w[i], conv_bias(i));
    ep.bias_leaky_relu(conv, b[i], buf.narrow(1, in_ch, gc));
  }
  const auto last = kConvsPerBlock - 1;
  ep.bias_residual(conv3x3(buf, w[last], conv_bias(last)), b[last], buf.narrow(1, 0, nf), dst);
}

// oneDNN adds the bias inside the convolution for free, so the CPU epilogue is one
// vectorised pass that writes straight into the buffer slice.
void cpu_leaky_relu(const at::Tensor& conv, const at::Tensor& /*bias*/, const at::Tensor& dst) {
  at::Tensor out = dst;  // leaky_relu_out takes a mutable reference; the slice shares storage.
  at::leaky_relu_out(out, conv, kLeakySlope);
}

void cpu_residual(const at::Tensor& conv, const at::Tensor& /*bias*/, const at::Tensor& skip, const at::Tensor& dst) {
  at::Tensor out = dst;
  at::add_out(out, skip, conv, kResidualScale);
}

const Epilogue cpu_epilogue{/*bias_in_conv=*/true, &cpu_leaky_relu, &cpu_residual};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rrdb_cpu(const at::Tensor& x, at::TensorList weights,
                                                                     at::TensorList biases) {
  return rrdb_forward(x, weights, biases, cpu_epilogue);
}

at::Tensor rrdb_inference_cpu(const at::Tensor& x, at::TensorList weights, at::TensorList biases) {
  return rrdb_inference_forward(x, weights, biases, cpu_epilogue);
}

// Runs the three dense blocks on bufs[block_buf[k]]; bufs[block_buf[0]] holds x.
at::Tensor run_blocks(const at::Tensor& input, at::TensorList weights, at::TensorList biases,
                      c10::ArrayRef<at::Tensor> bufs, std::array<int64_t, kBlocks> block_buf, const Epilogue& ep) {
  const int64_t nf = input.size(1);
  const int64_t gc = weights[0].size(0);
  bufs[block_buf[0]].narrow(1, 0, nf).copy_(input);
  auto y = at::empty_like(input);
  for (int64_t k = 0; k < kBlocks; ++k) {
    // Each block writes its output straight into the next block's buffer.
    const auto dst = k + 1 < kBlocks ? bufs[block_buf[k + 1]].narrow(1, 0, nf) : y;
    dense_block(bufs[block_buf[k]], weights.slice(k * kConvsPerBlock, kConvsPerBlock),
                biases.slice(k * kConvsPerBlock, kConvsPerBlock), nf, gc, dst, ep);
  }
  return at::add(input, y, kResidualScale);
}

std::vector<at::Tensor> make_buffers(const at::Tensor& x, int64_t channels, int64_t count) {
  std::vector<at::Tensor> bufs;
  for (int64_t i = 0; i < count; ++i) {
    bufs.push_back(at::empty({x.size(0), channels, x.size(2), x.size(3)}, x.options()));
  }
  return bufs;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rrdb_forward(
    const at::Tensor& x, at::TensorList weights, at::TensorList biases, const Epilogue& ep) {
  check_inputs(x, weights, biases);
  const auto bufs = make_buffers(x, x.size(1) + 4 * weights[0].size(0), kBlocks);
  auto out = run_blocks(x.contiguous(), weights, biases, bufs, {0, 1, 2}, ep);
  return std::make_tuple(out, bufs[0], bufs[1], bufs[2]);
}

at::Tensor rrdb_inference_forward(const at::Tensor& x, at::TensorList weights, at::TensorList biases,
                                  const Epilogue& ep) {
  check_inputs(x, weights, biases);
  const auto bufs = make_buffers(x, x.size(1) + 4 * weights[0].size(0), 2);
  return run_blocks(x.contiguous(), weights, biases, bufs, {0, 1, 0}, ep);
}

}  // namespace f2n

TORCH_LIBRARY(f2n, m) {
  m.def("rrdb(Tensor x, Tensor[] weights, Tensor[] biases) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("rrdb_inference(Tensor x, Tensor[] weights, Tensor[] biases) -> Tensor");
}

TORCH_LIBRARY_IMPL(f2n, CPU, m) {
  m.impl("rrdb", &f2n::rrdb_cpu);
  m.impl("rrdb_inference", &f2n::rrdb_inference_cpu);
}
