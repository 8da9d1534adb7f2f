"""LPIPS wiring. The backbone here is a RANDOM-INIT AlexNet written to a file (the
ImageNet weights are not available in CI): the test checks where weights come from,
not perceptual quality."""

import pytest
import torch
import torchvision

from f2n.errors import WeightsError
from f2n.training.perceptual import build_lpips


def test_backbone_comes_from_the_given_file_and_heads_from_the_package(tmp_path) -> None:
    torch.manual_seed(0)
    random_alexnet = torchvision.models.alexnet(weights=None).state_dict()
    path = tmp_path / "alexnet-random-init.pth"
    torch.save(random_alexnet, path)
    model = build_lpips(path)
    torch.testing.assert_close(model.net.slice1[0].weight, random_alexnet["features.0.weight"])
    torch.testing.assert_close(model.net.state_dict()["slice5.10.bias"], random_alexnet["features.10.bias"])
    # The package's trained heads are non-negative channel weights, not a fresh init.
    head = model.lin0.model[1].weight
    assert head.min() >= 0 and head.std() > 0
    assert not any(p.requires_grad for p in model.parameters())

    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert model(x, x).item() == 0.0
    assert model(x, x.flip(-1)).item() > 0.0


def test_missing_backbone_weights_raise_weights_error(monkeypatch) -> None:
    monkeypatch.setenv("F2N_OFFLINE", "1")
    with pytest.raises(WeightsError, match="alexnet"):
        build_lpips()


def test_a_file_without_alexnet_features_is_refused(tmp_path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="missing keys"):
        build_lpips(path)
