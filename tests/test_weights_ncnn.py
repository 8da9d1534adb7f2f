"""The ncnn -> torch converter: parity with ncnn's own CPU inference on the real
Real-ESRGAN x4plus files, and refusal of files it cannot read."""

from pathlib import Path

import numpy as np
import pytest
import torch

from f2n.errors import WeightsError
from f2n.weights import load_sr_network
from f2n.weights.ncnn_convert import (
    TAG_FP16,
    TAG_INT8,
    convert_ncnn_rrdbnet,
    parse_param,
)
from f2n.weights.registry import find_spec
from f2n.weights.store import packaged_file

ncnn = pytest.importorskip("ncnn", reason="the ncnn package (dev extra) is the parity reference")

PARITY_TOLERANCE = 5e-3  # max abs difference on the [0, 1]-clipped output


def packaged_ncnn_files() -> tuple[Path, Path]:
    source = find_spec("realesrgan-x4plus").source
    return packaged_file(source.param, source.pip_name), packaged_file(source.bin, source.pip_name)


def ncnn_reference(image: np.ndarray) -> np.ndarray:
    """ncnn's own CPU inference in fp32 (fp16/bf16 storage and arithmetic off)."""
    param, bin_ = packaged_ncnn_files()
    _, input_blob, output_blob = parse_param(param)
    net = ncnn.Net()
    options = net.opt
    options.use_vulkan_compute = False
    options.use_fp16_storage = options.use_fp16_packed = options.use_fp16_arithmetic = False
    options.use_bf16_storage = False
    options.num_threads = 1  # as torch: see tests/conftest.py
    assert net.load_param(str(param)) == 0 and net.load_model(str(bin_)) == 0
    extractor = net.create_extractor()
    extractor.input(input_blob, ncnn.Mat(np.ascontiguousarray(image, dtype=np.float32)))
    status, output = extractor.extract(output_blob)
    assert status == 0
    return np.array(output)



def max_difference(real_sr_weights: Path, image: np.ndarray) -> float:
    model = load_sr_network(real_sr_weights).model
    with torch.inference_mode():
        ours = model(torch.from_numpy(image)[None])[0].numpy()
    reference = ncnn_reference(image)
    assert ours.shape == reference.shape == (3, image.shape[1] * 4, image.shape[2] * 4)
    return float(np.abs(np.clip(ours, 0, 1) - np.clip(reference, 0, 1)).max())


def test_parity_with_ncnn_on_generated_image(real_sr_weights: Path) -> None:
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    rng = np.random.default_rng(0)
    image = np.stack([xx, yy, 0.5 + 0.4 * np.sin(6 * xx * yy)]) + rng.normal(0, 0.05, (3, 16, 16))
    difference = max_difference(real_sr_weights, np.clip(image, 0, 1).astype(np.float32))
    print(f"\nncnn parity, generated 16x16: max |torch - ncnn| = {difference:.2e}")
    assert difference <= PARITY_TOLERANCE


def test_parity_with_ncnn_on_real_crop(real_sr_weights: Path, shared_data: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    bgr = cv2.imread(str(shared_data / "real_lq" / "Lincoln.png"), cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    crop = bgr[h // 2 - 16 : h // 2 + 16, w // 2 - 16 : w // 2 + 16, ::-1]  # 32x32 RGB from the centre (the face)
    image = np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32) / 255.0
    difference = max_difference(real_sr_weights, image)
    print(f"\nncnn parity, Lincoln.png 32x32 crop: max |torch - ncnn| = {difference:.2e}")
    assert difference <= PARITY_TOLERANCE


def test_x4plus_layout_counts_and_hyperparameters() -> None:
    param, bin_ = packaged_ncnn_files()
    convs, input_blob, output_blob = parse_param(param)
    state, hyper = convert_ncnn_rrdbnet(param, bin_)
    assert len(convs) == 1 + 23 * 15 + 5 == 351
    assert (input_blob, output_blob) == ("data", "output")
    assert hyper == {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}
    assert len(state) == 2 * 351
    assert sum(t.numel() for t in state.values()) == 16_697_987  # RealESRGAN_x4plus parameter count


def rewrite_bin(bin_: Path, convs, out: Path, *, weight_tag: int) -> None:
    """Re-encode every conv weight of an fp16 .bin with another storage tag (fp32 data)."""
    data, offset, chunks = bin_.read_bytes(), 0, []
    for conv in convs:
        assert int.from_bytes(data[offset : offset + 4], "little") == TAG_FP16
        weight = np.frombuffer(data, "<f2", conv.weight_count, offset + 4).astype("<f4")
        offset += 4 + (conv.weight_count * 2 + 3) // 4 * 4
        chunks += [weight_tag.to_bytes(4, "little"), weight.tobytes(), data[offset : offset + conv.num_output * 4]]
        offset += conv.num_output * 4
    out.write_bytes(b"".join(chunks))


def test_fp32_storage_reads_same_weights(tmp_path: Path) -> None:
    param, bin_ = packaged_ncnn_files()
    convs, _, _ = parse_param(param)
    fp32_bin = tmp_path / "x4plus_fp32.bin"
    rewrite_bin(bin_, convs, fp32_bin, weight_tag=0)
    from_fp16, _ = convert_ncnn_rrdbnet(param, bin_)
    from_fp32, _ = convert_ncnn_rrdbnet(param, fp32_bin)
    assert all(torch.equal(from_fp16[key], from_fp32[key]) for key in from_fp16)


def test_int8_and_truncated_files_are_refused(tmp_path: Path) -> None:
    param, bin_ = packaged_ncnn_files()
    int8_bin = tmp_path / "int8.bin"
    int8_bin.write_bytes(TAG_INT8.to_bytes(4, "little") + bin_.read_bytes()[4:])
    with pytest.raises(WeightsError, match=r"tag 0x000D4B38 \(int8\), expected fp16"):
        convert_ncnn_rrdbnet(param, int8_bin)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(bin_.read_bytes()[: 1 << 20])
    with pytest.raises(WeightsError, match="truncated file"):
        convert_ncnn_rrdbnet(param, truncated)


def test_layer_order_is_checked(tmp_path: Path) -> None:
    """A .param whose convs carry activations at the wrong positions is not taken for an RRDBNet."""
    param, bin_ = packaged_ncnn_files()
    lines = param.read_text().splitlines()
    first_conv = next(i for i, line in enumerate(lines) if line.startswith("Convolution"))
    lines[first_conv] += " 9=2 -23310=1,2.000000e-01"  # a leaky ReLU fused into conv_first
    swapped = tmp_path / "swapped.param"
    swapped.write_text("\n".join(lines) + "\n")
    with pytest.raises(WeightsError, match="expected none at this position"):
        convert_ncnn_rrdbnet(swapped, bin_)
