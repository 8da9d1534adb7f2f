"""ESRGAN RRDBNet, with Real-ESRGAN's parameter names (the canonical f2n naming).

Parameter names are exactly those of ``RealESRGAN_x4plus.pth`` (``params_ema``):
``conv_first``, ``body.{i}.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up1``,
``conv_up2``, ``conv_hr``, ``conv_last``. ONNX initializer names and TensorRT refit
names derive from them.

``value_range`` is the range the weights were trained on: ``unit`` [0, 1] (Real-ESRGAN,
MetaF2N) or ``signed`` [-1, 1] (ReDegNet's F2N-ESRGAN). Outside the module every RRDBNet
takes and returns [0, 1]; a signed one maps in and out inside ``forward``, so every graph
exported from it (ONNX, OpenVINO, AOTInductor, TensorRT) carries the change with no new
weights. Folding it into ``conv_first`` instead would not be exact: its zero padding is
0.5 grey in one range and black in the other.

An RRDB block runs as the plain PyTorch code below (the specification) unless a fused op has
been registered with :func:`register_fused_rrdb`: :mod:`f2n.cpp_ext` does so when it is loaded,
from the layer above, so the network needs nothing of it. A block whose dense blocks or convs
carry hooks runs plain: the fused op never calls those modules, so their hooks would not fire.
"""

from collections.abc import Sequence
from typing import Literal, Protocol, get_args

import torch
import torch.nn.functional as F
from torch import nn

ValueRange = Literal["unit", "signed"]
VALUE_RANGES: tuple[ValueRange, ...] = get_args(ValueRange)
LEAKY_SLOPE = 0.2  # one definition for the plain block, the fused op and the ncnn converter
RESIDUAL_SCALE = 0.2


class FusedRRDB(Protocol):
    """A fused RRDB block: ``applies(x)`` says whether it runs for input ``x`` (device, export,
    autocast); called with the 15 conv weights and biases in ``rdb1.conv1 .. rdb3.conv5`` order."""

    def applies(self, x: torch.Tensor) -> bool: ...

    def __call__(self, x: torch.Tensor, weights: Sequence[torch.Tensor],
                 biases: Sequence[torch.Tensor]) -> torch.Tensor: ...


_fused: FusedRRDB | None = None  # see register_fused_rrdb


def register_fused_rrdb(op: FusedRRDB | None) -> FusedRRDB | None:
    """Make every RRDB block run as ``op`` where it applies (None: the plain block only);
    returns the op registered before."""
    global _fused
    previous, _fused = _fused, op
    return previous


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each reading the concatenation of all earlier outputs."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = F.leaky_relu(self.conv1(x), LEAKY_SLOPE)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), LEAKY_SLOPE)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), LEAKY_SLOPE)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), LEAKY_SLOPE)
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks and a scaled skip."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = _fused
        if fused is not None and not _hooked(self) and fused.applies(x):  # the same result, see f2n.cpp_ext
            rdbs = (self.rdb1, self.rdb2, self.rdb3)
            convs = [getattr(rdb, f"conv{i}") for rdb in rdbs for i in range(1, 6)]
            return fused(x, [c.weight for c in convs], [c.bias for c in convs])
        # The plain block below is the specification the fused op is tested against.
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


def _hooked(block: nn.Module) -> bool:
    """Whether a dense block of ``block`` or one of its convs has forward or backward hooks (a
    study's low-rank branch, a feature probe): only the plain block calls those modules. Read
    from the module dicts directly: ~15 µs a block on a 2-core CPU (``modules()``: ~50), against
    ~95 µs for gathering the block's 15 weights for the fused op."""
    return any(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
               or module._backward_pre_hooks
               for rdb in block._modules.values() for module in (rdb, *rdb._modules.values()))


class RRDBNet(nn.Module):
    """ESRGAN generator. ``scale`` 4 upsamples directly; 2 and 1 pixel-unshuffle the
    input first, as Real-ESRGAN's x2 models do, so the body always works at 1/4 of
    the output size. Input and output are in [0, 1] whatever ``value_range`` the weights
    were trained on (module docstring)."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        value_range: ValueRange = "unit",
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, got {scale}")
        if value_range not in VALUE_RANGES:
            raise ValueError(f"RRDBNet value_range must be one of {', '.join(VALUE_RANGES)}, got {value_range!r}")
        self.scale = scale
        self.value_range = value_range  # a plain attribute: state dicts stay those of the stock network
        unshuffle = {4: 1, 2: 4, 1: 16}[scale]
        self.conv_first = nn.Conv2d(num_in_ch * unshuffle, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.value_range == "signed":
            x = x * 2.0 - 1.0
        if self.scale != 4:
            x = F.pixel_unshuffle(x, 4 // self.scale)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2.0, mode="nearest")), LEAKY_SLOPE)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2.0, mode="nearest")), LEAKY_SLOPE)
        out = self.conv_last(F.leaky_relu(self.conv_hr(feat), LEAKY_SLOPE))
        return (out + 1.0) * 0.5 if self.value_range == "signed" else out
