"""Convert an ncnn RRDBNet (a ``.param`` text graph + ``.bin`` weight blob) into a
state dict with f2n's canonical RRDBNet names.

The ``.bin`` holds, for every layer in ``.param`` order that has weights, that
layer's blobs back to back. A Convolution stores its weight as a 4-byte storage
tag followed by the data (tag 0x01306B47: fp16, 0: fp32; fp16 data is padded to
4 bytes) and then, when ``5=1`` (bias_term), ``num_output`` raw fp32 biases.

Real-ESRGAN x4plus exported to ncnn is 351 Convolutions in the order of RRDBNet's
modules: conv_first, 23 x 15 body convs, conv_body, conv_up1, conv_up2, conv_hr,
conv_last. The converter checks that order by the activations ncnn fused into each
conv (leaky ReLU 0.2 on conv1-4 of every dense block and on conv_up1/up2/hr only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from f2n.errors import WeightsError
from f2n.nets.rrdbnet import LEAKY_SLOPE, RRDBNet

NCNN_MAGIC = "7767517"
TAG_FP16 = 0x01306B47
TAG_FP32 = 0
TAG_INT8 = 0x000D4B38
LEAKY_RELU = 2  # ncnn activation_type of a fused leaky ReLU
CONVS_PER_BLOCK = 15  # 3 dense blocks x 5 convs
CONVS_OUTSIDE_BODY = 6  # conv_first + conv_body, conv_up1, conv_up2, conv_hr, conv_last


@dataclass(frozen=True)
class NcnnConv:
    """One Convolution layer of a .param file (only what the converter needs)."""

    name: str
    num_output: int
    kernel: int
    stride: int
    pad: int
    has_bias: bool
    weight_count: int
    activation: int  # 0 none, 2 leaky ReLU
    activation_slope: float | None

    @property
    def in_channels(self) -> int:
        return self.weight_count // (self.num_output * self.kernel * self.kernel)


def parse_param(param_path: Path) -> tuple[list[NcnnConv], str, str]:
    """Read the Convolution layers (in file order), the input and the output blob
    names from an ncnn ``.param``; refuses any other weighted layer type."""
    lines = param_path.read_text().split("\n")
    if not lines or lines[0].strip() != NCNN_MAGIC:
        raise WeightsError(f"{param_path} is not an ncnn .param file: first line {lines[0][:20]!r}, expected {NCNN_MAGIC}")
    convs: list[NcnnConv] = []
    input_blob = output_blob = ""
    for line in lines[2:]:
        fields = line.split()
        if not fields:
            continue
        layer_type, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        outputs = fields[4 + n_in : 4 + n_in + n_out]
        params = dict(field.split("=", 1) for field in fields[4 + n_in + n_out :])
        if layer_type == "Input":
            input_blob = outputs[0]
        elif layer_type == "Convolution":
            convs.append(_conv_from_params(name, params, param_path))
        elif layer_type not in ("Split", "Concat", "Eltwise", "BinaryOp", "Interp"):
            raise WeightsError(f"{param_path}: layer {name} has type {layer_type}, expected only the layer types of an RRDBNet export")
        if outputs:
            output_blob = outputs[-1]
    return convs, input_blob, output_blob


def _conv_from_params(name: str, params: dict[str, str], param_path: Path) -> NcnnConv:
    activation = int(params.get("9", "0"))
    slope = None
    if activation == LEAKY_RELU:
        # "-23310=1,2.000000e-01": an array of one float, the negative slope.
        slope = float(params["-23310"].split(",")[1])
    kernel = int(params.get("1", "0"))
    kernel_h = int(params.get("11", str(kernel)))
    if kernel_h != kernel:
        raise WeightsError(f"{param_path}: conv {name} has a {kernel}x{kernel_h} kernel, expected a square one")
    return NcnnConv(
        name=name,
        num_output=int(params.get("0", "0")),
        kernel=kernel,
        stride=int(params.get("3", "1")),
        pad=int(params.get("4", "0")),
        has_bias=params.get("5", "0") == "1",
        weight_count=int(params.get("6", "0")),
        activation=activation,
        activation_slope=slope,
    )


def read_conv_blobs(bin_path: Path, convs: list[NcnnConv]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Read each conv's (weight, bias) from the .bin in order; weights come back as
    fp32 arrays of shape (out, in, k, k)."""
    data = bin_path.read_bytes()
    offset = 0
    blobs: list[tuple[np.ndarray, np.ndarray | None]] = []
    for conv in convs:
        if offset + 4 > len(data):
            raise WeightsError(f"{bin_path} ends at byte {len(data)} before conv {conv.name}: truncated file")
        tag = int.from_bytes(data[offset : offset + 4], "little")
        offset += 4
        itemsize = 2 if tag == TAG_FP16 else 4
        if offset + conv.weight_count * itemsize + conv.num_output * 4 * conv.has_bias > len(data):
            raise WeightsError(f"{bin_path} ends at byte {len(data)} inside conv {conv.name}: truncated file")
        if tag == TAG_FP16:
            size = conv.weight_count * 2
            weight = np.frombuffer(data, dtype="<f2", count=conv.weight_count, offset=offset).astype(np.float32)
            offset += (size + 3) // 4 * 4
        elif tag == TAG_FP32:
            weight = np.frombuffer(data, dtype="<f4", count=conv.weight_count, offset=offset).copy()
            offset += conv.weight_count * 4
        else:
            kind = "int8" if tag == TAG_INT8 else "unknown"
            raise WeightsError(f"{bin_path}: conv {conv.name} stores weights with tag 0x{tag:08X} ({kind}), expected fp16 (0x{TAG_FP16:08X}) or fp32 (0)")
        bias = None
        if conv.has_bias:
            bias = np.frombuffer(data, dtype="<f4", count=conv.num_output, offset=offset).copy()
            offset += conv.num_output * 4
        blobs.append((weight.reshape(conv.num_output, conv.in_channels, conv.kernel, conv.kernel), bias))
    if offset != len(data):
        raise WeightsError(f"{bin_path} has {len(data)} bytes, the .param's convs use {offset}: .param and .bin do not match")
    return blobs


def _expected_activations(num_block: int) -> list[bool]:
    """Whether each RRDBNet conv, in module order, is followed by a leaky ReLU."""
    dense_block = [True, True, True, True, False]
    return [False] + dense_block * 3 * num_block + [False, True, True, True, False]


def convert_ncnn_rrdbnet(param_path: Path, bin_path: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Return (state dict with canonical RRDBNet names, RRDBNet hyperparameters)."""
    convs, _, _ = parse_param(param_path)
    if len(convs) < CONVS_OUTSIDE_BODY + CONVS_PER_BLOCK or (len(convs) - CONVS_OUTSIDE_BODY) % CONVS_PER_BLOCK:
        raise WeightsError(f"{param_path} has {len(convs)} convolutions, expected 6 + 15 x num_block (351 for x4plus)")
    hyper = {
        "num_in_ch": convs[0].in_channels,
        "num_out_ch": convs[-1].num_output,
        "scale": 4,  # an x2/x1 export starts with a pixel-unshuffle, which this parser refuses
        "num_feat": convs[0].num_output,
        "num_block": (len(convs) - CONVS_OUTSIDE_BODY) // CONVS_PER_BLOCK,
        "num_grow_ch": convs[1].num_output,
    }
    for conv, leaky in zip(convs, _expected_activations(hyper["num_block"]), strict=True):
        if (conv.kernel, conv.stride, conv.pad, conv.has_bias) != (3, 1, 1, True):
            raise WeightsError(f"{param_path}: conv {conv.name} is k{conv.kernel} s{conv.stride} p{conv.pad} bias={conv.has_bias}, expected a 3x3 stride-1 pad-1 conv with bias")
        fused = conv.activation == LEAKY_RELU and conv.activation_slope is not None and abs(conv.activation_slope - LEAKY_SLOPE) < 1e-6
        if fused != leaky or (conv.activation not in (0, LEAKY_RELU)):
            raise WeightsError(f"{param_path}: conv {conv.name} has activation {conv.activation}, expected {'leaky ReLU 0.2' if leaky else 'none'} at this position of an RRDBNet")
    with torch.device("meta"):
        reference = RRDBNet(**hyper).state_dict()
    state: dict[str, torch.Tensor] = {}
    conv_names = [key[: -len(".weight")] for key in reference if key.endswith(".weight")]
    for name, (weight, bias) in zip(conv_names, read_conv_blobs(bin_path, convs), strict=True):
        if tuple(weight.shape) != tuple(reference[f"{name}.weight"].shape):
            raise WeightsError(f"{param_path}: {name} has shape {tuple(weight.shape)}, expected {tuple(reference[name + '.weight'].shape)}")
        state[f"{name}.weight"] = torch.from_numpy(weight)
        state[f"{name}.bias"] = torch.from_numpy(bias)
    return state, hyper


# ---- the reverse: an RRDBNet's state dict as an ncnn .param text and .bin blob ---------------

class _Graph:
    """ncnn layers in order; a blob read by several layers gets the Split ncnn needs (each ncnn blob
    has exactly one consumer), inserted when the text is written."""

    def __init__(self) -> None:
        self.layers: list[tuple[str, str, list[str], str, str]] = []  # type, name, inputs, output, params

    def add(self, kind: str, inputs: list[str], params: str = "") -> str:
        output = f"b{len(self.layers)}"
        self.layers.append((kind, f"{kind.lower()}_{len(self.layers)}", inputs, output, params))
        return output

    def text(self, input_blob: str, output_blob: str) -> str:
        readers: dict[str, int] = {}
        for _, _, inputs, _, _ in self.layers:
            for blob in inputs:
                readers[blob] = readers.get(blob, 0) + 1
        taken: dict[str, int] = {}
        lines, blobs = [], 0

        def read(blob: str) -> str:
            if readers[blob] == 1:
                return blob
            taken[blob] = taken.get(blob, 0) + 1
            return f"{blob}_s{taken[blob] - 1}"

        def emit(kind: str, name: str, inputs: list[str], outputs: list[str], params: str = "") -> None:
            nonlocal blobs
            lines.append(f"{kind} {name} {len(inputs)} {len(outputs)} {' '.join(inputs + outputs)} {params}".rstrip())
            blobs += len(outputs)
            for blob in outputs:
                if readers.get(blob, 0) > 1:
                    fanout = [f"{blob}_s{index}" for index in range(readers[blob])]
                    lines.append(f"Split split_{blob} 1 {len(fanout)} {blob} {' '.join(fanout)}")
                    blobs += len(fanout)

        emit("Input", "input", [], [input_blob], "")
        for kind, name, inputs, output, params in self.layers:
            emit(kind, name, [read(blob) for blob in inputs], [output_blob if output == self.layers[-1][3] else output],
                 params)
        return f"{NCNN_MAGIC}\n{len(lines)} {blobs}\n" + "\n".join(lines) + "\n"


def rrdbnet_param(hyper: dict[str, int], signed: bool = False, input_blob: str = "data",
                  output_blob: str = "output") -> str:
    """The ncnn ``.param`` text of an x4 RRDBNet with these hyperparameters: the layers
    :func:`parse_param` reads back, convs in module order (:func:`rrdbnet_bin` writes their weights).
    ``signed``: θ works in [-1, 1], so the graph maps [0, 1] in and out as ``RRDBNet.forward`` does."""
    if hyper.get("scale", 4) != 4:
        raise WeightsError(f"an ncnn graph is written for x4 RRDBNets only, got x{hyper['scale']}")
    leaky = f"9={LEAKY_RELU} -23310=1,{LEAKY_SLOPE:e}"
    scaled_sum = "0=1 -23301=2,2.000000e-01,1.000000e+00"  # Eltwise SUM: 0.2 * a + b (RESIDUAL_SCALE)
    graph = _Graph()

    def affine(blob: str, scale: float, shift: float) -> str:  # BinaryOp with a scalar: 2 = mul, 0 = add
        return graph.add("BinaryOp", [graph.add("BinaryOp", [blob], f"0=2 1=1 2={scale:e}")], f"0=0 1=1 2={shift:e}")

    def conv(blob: str, cin: int, cout: int, relu: bool) -> str:
        return graph.add("Convolution", [blob], f"0={cout} 1=3 4=1 5=1 6={cout * cin * 9}" + (f" {leaky}" if relu else ""))

    feat, grow = hyper["num_feat"], hyper["num_grow_ch"]
    first = conv(affine(input_blob, 2.0, -1.0) if signed else input_blob, hyper["num_in_ch"], feat, False)
    x = first
    for _ in range(hyper["num_block"]):
        block_in = x
        for _ in range(3):  # rdb1..3
            dense = [x]
            for index in range(4):
                joined = dense[0] if len(dense) == 1 else graph.add("Concat", list(dense))
                dense.append(conv(joined, feat + index * grow, grow, True))
            x5 = conv(graph.add("Concat", list(dense)), feat + 4 * grow, feat, False)
            x = graph.add("Eltwise", [x5, x], scaled_sum)
        x = graph.add("Eltwise", [x, block_in], scaled_sum)
    x = graph.add("BinaryOp", [first, conv(x, feat, feat, False)], "0=0")  # feat + conv_body(body(feat))
    for _ in range(2):  # conv_up1, conv_up2 after a nearest x2
        x = conv(graph.add("Interp", [x], "0=1 1=2.000000e+00 2=2.000000e+00"), feat, feat, True)
    x = conv(conv(x, feat, feat, True), feat, hyper["num_out_ch"], False)  # conv_hr, conv_last
    if signed:
        affine(x, 0.5, 0.5)  # (out + 1) / 2
    return graph.text(input_blob, output_blob)


def rrdbnet_bin(state: Mapping[str, torch.Tensor], hyper: dict[str, int]) -> bytes:
    """The ncnn ``.bin`` for :func:`rrdbnet_param`: per conv in module order (whatever the order
    of ``state``'s keys) the fp32 tag, the weight and the bias (the layout :func:`read_conv_blobs` reads)."""
    with torch.device("meta"):
        reference = RRDBNet(**hyper).state_dict()
    tag = TAG_FP32.to_bytes(4, "little")
    parts = []
    for key in reference:
        if key.endswith(".weight"):
            parts += [tag, _fp32_bytes(state[key]), _fp32_bytes(state[key[: -len(".weight")] + ".bias"])]
    return b"".join(parts)


def _fp32_bytes(tensor: torch.Tensor) -> bytes:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype="<f4").tobytes()
