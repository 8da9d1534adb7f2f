"""Python side of ``torch.ops.f2n.rrdb``: the autograd formula, the fake kernel for
torch.compile, and the call used by RRDBNet.

The backward is written in differentiable ATen operations (convolution_backward,
leaky_relu_backward), so autograd differentiates it again: second-order gradients
(MAML) need no hand-written double backward. It reads the post-activation feature
buffers the forward returned, so they are saved outputs, and gradients arriving at
those buffers (they do in double backward) are folded in.

The formula lives in an ``autograd.Function`` with ``setup_context`` rather than in
``torch.library.register_autograd``: only the former works under torch.func
transforms (``grad_and_value`` in the runtime's adaptation step).
"""

from collections.abc import Sequence

import torch
from torch import Tensor

from f2n.nets.rrdbnet import LEAKY_SLOPE, RESIDUAL_SCALE

CONVS_PER_BLOCK = 5
BLOCKS = 3


def fused_rrdb(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
    """``x + 0.2 * rdb3(rdb2(rdb1(x)))`` with the 15 conv weights and biases in
    ``rdb1.conv1 .. rdb3.conv5`` order. Needs ``f2n.cpp_ext.load()`` first.

    The op works in NCHW: a dense block's concatenation is a channel slice of one NCHW
    buffer. channels_last weights (the torch engine's CUDA layout) would make each of
    the 15 convolutions convert its input and its output between layouts; converting the
    weights once per call instead costs ~55k values per conv against ~1M per activation
    of a 192² tile (``benchmarks/gpu/verify.py``'s fused part times both layouts)."""
    x = x.contiguous()
    weights = [w.contiguous() for w in weights]
    tensors = (x, *weights, *biases)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _FusedRRDB.apply(*tensors)[0]
    return torch.ops.f2n.rrdb_inference(x, list(weights), list(biases))


def _conv_backward(grad: Tensor, inp: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(d input, d weight, d bias) of a 3x3 stride-1 pad-1 convolution."""
    return torch.ops.aten.convolution_backward(
        grad, inp, weight, [weight.shape[0]], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, True, True]
    )


def _add(a: Tensor | None, b: Tensor) -> Tensor:
    return b if a is None else a + b


def _dense_block_backward(
    buf: Tensor, weights: Sequence[Tensor], grad_out: Tensor, grad_buf: Tensor | None
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Gradients of one dense block w.r.t. its input, weights and biases.

    ``buf`` holds [input, x1, x2, x3, x4] along channels; ``grad_out`` is the gradient
    of the block output ``input + 0.2 * conv5(buf)``; ``grad_buf`` the gradient that
    reached the buffer directly (double backward), if any.
    """
    gc = weights[0].shape[0]
    nf = buf.shape[1] - 4 * gc
    sizes = [nf] + [gc] * 4
    chunks: list[Tensor | None] = list(grad_buf.split(sizes, 1)) if grad_buf is not None else [None] * 5
    chunks[0] = _add(chunks[0], grad_out)
    grad_w: list[Tensor] = [None] * CONVS_PER_BLOCK  # type: ignore[list-item]  # all filled below
    grad_b: list[Tensor] = [None] * CONVS_PER_BLOCK  # type: ignore[list-item]
    grad_in, grad_w[4], grad_b[4] = _conv_backward(grad_out * RESIDUAL_SCALE, buf, weights[4])
    chunks = [_add(c, g) for c, g in zip(chunks, grad_in.split(sizes, 1))]
    for i in range(3, -1, -1):  # conv i+1 reads chunks 0..i and wrote chunk i+1
        in_ch = nf + i * gc
        activated = buf.narrow(1, in_ch, gc)
        grad_pre = torch.ops.aten.leaky_relu_backward(chunks[i + 1], activated, LEAKY_SLOPE, True)
        grad_in, grad_w[i], grad_b[i] = _conv_backward(grad_pre, buf.narrow(1, 0, in_ch), weights[i])
        for j, g in enumerate(grad_in.split(sizes[: i + 1], 1)):
            chunks[j] = _add(chunks[j], g)
    return chunks[0], grad_w, grad_b


class _FusedRRDB(torch.autograd.Function):
    """Autograd for ``f2n::rrdb``; inputs are flat: x, 15 weights, 15 biases."""

    @staticmethod
    def forward(x: Tensor, *params: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        count = BLOCKS * CONVS_PER_BLOCK
        return torch.ops.f2n.rrdb(x, list(params[:count]), list(params[count:]))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        weights = inputs[1 : 1 + BLOCKS * CONVS_PER_BLOCK]
        _, *bufs = output
        ctx.save_for_backward(*bufs, *weights)
        # The buffers are outputs only for backward; most callers never differentiate
        # them, so do not materialise zero gradients of their full size.
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_out: Tensor | None, *grad_bufs: Tensor | None):
        saved = ctx.saved_tensors
        bufs, weights = saved[:BLOCKS], saved[BLOCKS:]
        nf = weights[4].shape[0]
        grad_w: list[Tensor] = []
        grad_b: list[Tensor] = []
        grad = grad_out * RESIDUAL_SCALE if grad_out is not None else torch.zeros_like(bufs[0][:, :nf])
        for k in range(BLOCKS - 1, -1, -1):
            block_w = weights[k * CONVS_PER_BLOCK : (k + 1) * CONVS_PER_BLOCK]
            grad, gw, gb = _dense_block_backward(bufs[k], block_w, grad, grad_bufs[k])
            grad_w = gw + grad_w
            grad_b = gb + grad_b
        grad_x = grad if grad_out is None else grad_out + grad
        return (grad_x, *grad_w, *grad_b)


def _fake_rrdb(x: Tensor, weights: list[Tensor], biases: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    n, nf, h, w = x.shape
    channels = nf + 4 * weights[0].shape[0]
    return (x.new_empty(x.shape), *(x.new_empty((n, channels, h, w)) for _ in range(BLOCKS)))


def _fake_rrdb_inference(x: Tensor, weights: list[Tensor], biases: list[Tensor]) -> Tensor:
    return x.new_empty(x.shape)


def register_python_parts() -> None:
    """Called once by ``load`` after the library has defined ``f2n::rrdb``: the fake kernel lets torch.compile trace it."""
    torch.library.register_fake("f2n::rrdb", _fake_rrdb)
    torch.library.register_fake("f2n::rrdb_inference", _fake_rrdb_inference)
