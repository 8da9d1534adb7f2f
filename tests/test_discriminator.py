import pytest
import torch

from f2n.errors import WeightsError
from f2n.nets.discriminator import UNetDiscriminatorSN
from f2n.training.models import load_discriminator

# The tensors of RealESRGAN_x4plus_netD.pth (under "params"), in its order.
OFFICIAL_KEYS = (
    ["conv0.weight", "conv0.bias"]
    + [f"conv{i}.{name}" for i in range(1, 9) for name in ("weight_orig", "weight_u", "weight_v")]
    + ["conv9.weight", "conv9.bias"]
)


def test_key_layout_and_shapes_match_the_official_file() -> None:
    with torch.device("meta"):
        state = UNetDiscriminatorSN(num_feat=64).state_dict()
    assert list(state) == OFFICIAL_KEYS
    assert tuple(state["conv3.weight_orig"].shape) == (512, 256, 4, 4)
    assert tuple(state["conv4.weight_orig"].shape) == (256, 512, 3, 3)
    assert tuple(state["conv1.weight_u"].shape) == (128,)
    assert tuple(state["conv9.weight"].shape) == (1, 64, 3, 3)


def test_generated_official_checkpoint_loads_and_gives_the_same_logits(tmp_path) -> None:
    torch.manual_seed(0)
    source = UNetDiscriminatorSN(num_feat=8)
    source.train()(torch.rand(1, 3, 16, 16))  # a power iteration, so u/v differ from their init
    path = tmp_path / "RealESRGAN_x4plus_netD.pth"
    torch.save({"params": source.state_dict()}, path)  # Real-ESRGAN's layout
    loaded = load_discriminator(path)
    x = torch.rand(2, 3, 32, 24)
    expected = source.eval()(x)
    torch.testing.assert_close(loaded.eval()(x), expected)
    assert expected.shape == (2, 1, 32, 24)
    # The stored u/v matter: a fresh discriminator with the same weight_orig differs in eval.
    fresh = UNetDiscriminatorSN(num_feat=8)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith(("_u", "_v"))}
    fresh.load_state_dict(state, strict=False)
    assert not torch.allclose(fresh.eval()(x), expected)


def test_wrong_files_and_sizes_are_refused(tmp_path) -> None:
    path = tmp_path / "not_d.pth"
    torch.save({"params": {"conv_first.weight": torch.zeros(1)}}, path)
    with pytest.raises(WeightsError, match="conv0.weight"):
        load_discriminator(path)
    with pytest.raises(ValueError, match="multiple of 8"):
        UNetDiscriminatorSN(num_feat=4)(torch.rand(1, 3, 12, 16))
