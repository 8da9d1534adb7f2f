"""Checkpoint layouts round-trip through files into load_sr_network; bad files are
refused with messages that name what is wrong."""

import os
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from f2n.errors import WeightsError
from f2n.nets.masknet import MaskNet
from f2n.nets.rrdbnet import RRDBNet
from f2n.weights import (
    load_into,
    load_sr_network,
    load_state_dict_file,
    save_f2n_checkpoint,
)

HYPERPARAMETERS = [
    {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 1, "num_grow_ch": 4},
    {"num_in_ch": 3, "num_out_ch": 3, "scale": 2, "num_feat": 12, "num_block": 2, "num_grow_ch": 6},
    {"num_in_ch": 3, "num_out_ch": 3, "scale": 1, "num_feat": 8, "num_block": 1, "num_grow_ch": 4},
    {"num_in_ch": 1, "num_out_ch": 1, "scale": 4, "num_feat": 8, "num_block": 3, "num_grow_ch": 4},
]


def old_esrgan_layout(state: dict[str, torch.Tensor], num_block: int) -> dict[str, torch.Tensor]:
    """The key names of the original ESRGAN repository's x4 RRDB_net (model.N)."""
    tail = {"conv_first": "model.0", "conv_body": f"model.1.sub.{num_block}", "conv_up1": "model.3", "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    out = {}
    for key, value in state.items():
        module, _, kind = key.rpartition(".")
        block = re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)", module)
        out[f"model.1.sub.{block[1]}.RDB{block[2]}.conv{block[3]}.0.{kind}" if block else f"{tail[module]}.{kind}"] = value
    return out


def new_esrgan_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The key names of ESRGAN's later RRDBNet_arch (RRDB_trunk, trunk_conv, upconv1, HRconv)."""
    renamed = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    out = {}
    for key, value in state.items():
        module, _, kind = key.rpartition(".")
        block = re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)", module)
        out[f"RRDB_trunk.{block[1]}.RDB{block[2]}.conv{block[3]}.{kind}" if block else f"{renamed.get(module, module)}.{kind}"] = value
    return out


def write_layout(layout: str, net: RRDBNet, hyper: dict[str, int], folder: Path) -> Path:
    state = net.state_dict()
    if layout == "realesrgan-params-ema":  # as RealESRGAN_x4plus.pth, with a decoy "params" next to it
        decoy = {key: torch.randn_like(value) for key, value in state.items()}
        torch.save({"params_ema": state, "params": decoy}, folder / "net.pth")
        return folder / "net.pth"
    if layout == "old-esrgan":
        torch.save(old_esrgan_layout(state, hyper["num_block"]), folder / "net.pth")
        return folder / "net.pth"
    if layout == "new-esrgan-dataparallel":
        torch.save({f"module.{k}": v for k, v in new_esrgan_layout(state).items()}, folder / "net.pth")
        return folder / "net.pth"
    if layout == "adapted-safetensors":
        save_file(state, str(folder / "net.safetensors"), metadata={"f2n_adapted_from": "test"})
        return folder / "net.safetensors"
    assert layout == "f2n-checkpoint"
    return save_f2n_checkpoint(folder / "ckpt.safetensors", state)


LAYOUTS = ["realesrgan-params-ema", "old-esrgan", "new-esrgan-dataparallel", "adapted-safetensors", "f2n-checkpoint"]
OLD_LAYOUTS_X4_ONLY = {"old-esrgan", "new-esrgan-dataparallel"}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("hyper", HYPERPARAMETERS, ids=lambda h: f"s{h['scale']}f{h['num_feat']}b{h['num_block']}g{h['num_grow_ch']}c{h['num_in_ch']}")
def test_round_trip(layout: str, hyper: dict[str, int], tmp_path: Path) -> None:
    if layout in OLD_LAYOUTS_X4_ONLY and hyper["scale"] != 4:
        pytest.skip("ESRGAN's own layouts exist only for x4")
    torch.manual_seed(0)
    net = RRDBNet(**hyper).eval()
    loaded = load_sr_network(write_layout(layout, net, hyper, tmp_path))
    descriptor = loaded.descriptor
    assert {k: getattr(descriptor, k) for k in hyper} == hyper
    assert not loaded.model.training
    x = torch.rand(1, hyper["num_in_ch"], 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(x), rtol=0, atol=0)


def test_f2n_checkpoint_carries_masknet_and_adaptation_defaults(tmp_path: Path) -> None:
    sr, masknet = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), MaskNet(num_feat=8, num_layers=3)
    path = save_f2n_checkpoint(tmp_path / "ckpt.safetensors", sr.state_dict(), masknet.state_dict(), {"alpha": 1e-4, "steps": 3, "optimizer": "adam", "iteration": 5000})
    loaded = load_sr_network(path)
    assert (loaded.adaptation_defaults.alpha, loaded.adaptation_defaults.steps, loaded.adaptation_defaults.optimizer) == (1e-4, 3, "adam")
    fresh = MaskNet(num_feat=8, num_layers=3)
    load_into(fresh, loaded.masknet_state, what="MaskNet of the checkpoint")
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), masknet.state_dict().values()))


def test_plain_weights_have_no_adaptation_defaults(tmp_path: Path) -> None:
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)
    loaded = load_sr_network(write_layout("adapted-safetensors", net, {}, tmp_path))
    assert loaded.adaptation_defaults is None and loaded.masknet_state is None


def test_partial_adaptation_meta_is_refused(tmp_path: Path) -> None:
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)
    with pytest.raises(WeightsError, match="expected all of alpha, steps, optimizer or none"):
        save_f2n_checkpoint(tmp_path / "ckpt.safetensors", net.state_dict(), None, {"alpha": 0.1})
    assert not list(tmp_path.iterdir())


class WritesFileWhenUnpickled:
    """A pickle payload that writes a file: what a hostile .pth can do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "code ran"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker, weights = tmp_path / "marker.txt", tmp_path / "evil.pth"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(1), "payload": WritesFileWhenUnpickled(marker)}}, weights)
    torch.load(weights, weights_only=False)  # control: an unsafe load really runs the payload
    assert marker.read_text() == "code ran"
    marker.unlink()
    with pytest.raises(WeightsError, match=r"refused to load .*evil\.pth"):
        load_state_dict_file(weights)
    with pytest.raises(WeightsError, match="refused to load"):
        load_sr_network(weights)
    assert not marker.exists()


def test_truncated_and_corrupt_files_are_refused(tmp_path: Path) -> None:
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)
    torch.save({"params_ema": net.state_dict()}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        load_state_dict_file(tmp_path / "cut.pth")
    save_file(net.state_dict(), str(tmp_path / "full.safetensors"))
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        load_state_dict_file(tmp_path / "cut.safetensors")


@pytest.mark.parametrize(("name", "kind"), [("net.onnx", "ONNX graph"), ("net.pt2", "AOTInductor package"),
                                           ("net.PLAN", "TensorRT plan")])
def test_an_exported_engine_given_as_weights_is_named_as_such(tmp_path: Path, name: str, kind: str) -> None:
    (tmp_path / name).write_bytes(b"\x08\x07engine bytes")  # was: "corrupt or truncated"
    with pytest.raises(WeightsError, match=f"is an exported {kind}, not a weight file; give the .pth/.safetensors"):
        load_state_dict_file(tmp_path / name)


def test_strict_messages_name_missing_unexpected_and_misshaped_keys() -> None:
    net = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4)
    state = net.state_dict()
    del state["conv_hr.bias"], state["body.1.rdb3.conv5.weight"]
    state["body.2.rdb1.conv1.weight"] = torch.zeros(4, 8, 3, 3)
    state["conv_last.weight"] = torch.zeros(3, 16, 3, 3)
    with pytest.raises(WeightsError) as caught:
        load_into(RRDBNet(num_feat=8, num_block=2, num_grow_ch=4), state, what="test weights")
    message = str(caught.value)
    assert "\n" not in message
    assert "missing keys (2): body.1.rdb3.conv5.weight, conv_hr.bias" in message
    assert "unexpected keys (1): body.2.rdb1.conv1.weight" in message
    assert "conv_last.weight (3, 16, 3, 3) vs (3, 8, 3, 3)" in message


def test_a_block_too_few_is_named_by_load_sr_network(tmp_path: Path) -> None:
    """Hyperparameters come from the keys, so a hole inside the body is a missing key."""
    state = RRDBNet(num_feat=8, num_block=3, num_grow_ch=4).state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("body.1.")}
    save_file(state, str(tmp_path / "holey.safetensors"))
    with pytest.raises(WeightsError, match=r"missing keys \(30\): body\.1\.rdb1\.conv1\.weight"):
        load_sr_network(tmp_path / "holey.safetensors")


def test_unknown_layout_and_unknown_source_are_refused(tmp_path: Path) -> None:
    save_file({"encoder.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsError, match="not a known RRDBNet layout: keys start encoder.weight"):
        load_sr_network(tmp_path / "other.safetensors")
    with pytest.raises(WeightsError, match="neither a registry name"):
        load_sr_network("realesrgan-x9000")


def test_saved_weight_files_get_the_usual_mode_not_mkstemps_0600(tmp_path: Path) -> None:
    # safetensors replaces the temp file with a fresh 0600 one: the mode is set after writing.
    from f2n.weights.checkpoint import save_safetensors_atomic

    mask = os.umask(0o022)
    try:
        written = save_safetensors_atomic(tmp_path / "w.safetensors", {"a": torch.zeros(2)}, {})
    finally:
        os.umask(mask)
    assert written.stat().st_mode & 0o777 == 0o644
