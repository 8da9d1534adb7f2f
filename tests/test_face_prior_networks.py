"""Network face priors through ``--prior PATH``: files made by spandrel's own architecture
classes (random weights, saved as the official files are, wrapped in ``params_ema``) give
the faces of spandrel's network called with the official normalisation; a GPEN exported to
ONNX in the circulating I/O convention gives the torch prior's faces; unknown and corrupt
files are one-line WeightsErrors."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from f2n.errors import ConfigError, WeightsError
from f2n.fileio import sha256_file
from f2n.runtime.face_prior import make_prior, parse_prior_options
from f2n.weights.networks import check_loads

GPEN_FIXTURE = Path(__file__).parent / "data" / "gpen_official" / "gpen_cm1.pth"  # made by the official code


def _gfpgan() -> nn.Module:
    from spandrel.architectures.GFPGAN import GFPGAN

    return GFPGAN()  # spandrel's loader fixes every hyperparameter: only the released size loads


def _codeformer() -> nn.Module:
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    return CodeFormer(dim_embd=64, n_layers=1, codebook_size=64)  # the VQGAN around it is fixed


def _restoreformer() -> nn.Module:
    from spandrel.architectures.RestoreFormer import RestoreFormer

    return RestoreFormer(n_embed=32, embed_dim=16, ch=32, ch_mult=(1, 1, 1, 1, 1, 1), num_res_blocks=1,
                         z_channels=32)


# The official inference of each (GFPGANer.enhance, inference_codeformer.py): RGB in [-1, 1]
# in, the first output clamped to [-1, 1] and mapped back to [0, 1].
OFFICIAL_CALLS: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    "gfpgan": lambda net, x: net(x, return_rgb=False)[0],
    "codeformer": lambda net, x: net(x, weight=0.7)[0],
    "restoreformer": lambda net, x: net(x)[0],
}


@pytest.mark.slow
@pytest.mark.parametrize("architecture, build", [("gfpgan", _gfpgan), ("codeformer", _codeformer),
                                                 ("restoreformer", _restoreformer)])
def test_a_spandrel_face_restorer_file_restores_as_its_official_inference(
        tmp_path: Path, architecture: str, build: Callable[[], nn.Module]) -> None:
    torch.manual_seed(0)
    net = build().eval()
    path = tmp_path / f"{architecture}.pth"
    torch.save({"params_ema": net.state_dict()}, path)  # the released files' wrapper
    prior = make_prior(str(path), options={"w": 0.7} if architecture == "codeformer" else None)
    assert prior.name == architecture
    assert prior.provenance["sha256"] == sha256_file(path) and prior.provenance["file"] == str(path)

    faces = np.random.default_rng(0).random((1, 512, 512, 3), dtype=np.float32)
    restored = prior.restore(faces, np.zeros((1, 2, 3)))
    with torch.no_grad():
        torch.manual_seed(0)  # GFPGAN's decoder noise: the prior seeds it with 0 for every photo
        x = torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous() * 2 - 1
        expected = ((OFFICIAL_CALLS[architecture](net, x).clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    assert restored.shape == faces.shape
    np.testing.assert_allclose(restored, expected, rtol=0, atol=1e-5)  # for GFPGAN: its noise seeded with 0


def test_a_gpen_file_restores_with_gpen_normalisation_in_batches() -> None:
    import torch.nn.functional as F

    from f2n.weights import load_state_dict_file
    from f2n.weights.gpen import load_gpen

    prior = make_prior(str(GPEN_FIXTURE))
    prior.batch_size = 2
    assert prior.name == "gpen-bfr-64" and prior.provenance["architecture"] == "gpen"
    faces = np.random.default_rng(0).random((3, 128, 128, 3), dtype=np.float32)
    restored = prior.restore(faces, np.zeros((3, 2, 3)))
    model = load_gpen(load_state_dict_file(GPEN_FIXTURE), GPEN_FIXTURE)
    with torch.no_grad():
        x = F.interpolate(torch.from_numpy(faces).permute(0, 3, 1, 2), size=64, mode="bicubic", align_corners=False)
        y = F.interpolate(((model(x * 2 - 1) + 1) / 2).clamp(0, 1), size=128, mode="bicubic", align_corners=False)
    np.testing.assert_allclose(restored, y.clamp(0, 1).permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_an_onnx_gpen_in_the_circulating_convention_gives_the_torch_priors_faces(tmp_path: Path) -> None:
    from f2n.weights import load_state_dict_file
    from f2n.weights.gpen import load_gpen

    model = load_gpen(load_state_dict_file(GPEN_FIXTURE), GPEN_FIXTURE)
    onnx_path = tmp_path / "GPEN-BFR-64.onnx"
    # As the GPEN-BFR ONNX files in circulation: one 1x3xSxS RGB input in [-1, 1], no metadata.
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(onnx_path), input_names=["input"],
                      output_names=["output"], opset_version=17, dynamo=False)
    onnx_prior = make_prior(str(onnx_path))
    torch_prior = make_prior(str(GPEN_FIXTURE))
    assert (onnx_prior.size, onnx_prior.fixed_batch, onnx_prior.value_range) == (64, 1, (-1.0, 1.0))
    faces = np.random.default_rng(1).random((2, 96, 96, 3), dtype=np.float32)
    np.testing.assert_allclose(onnx_prior.restore(faces, np.zeros((2, 2, 3))),
                               torch_prior.restore(faces, np.zeros((2, 2, 3))), atol=1e-4)


def test_unknown_and_corrupt_prior_files_are_one_line_weights_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"head.weight": torch.zeros(4, 4)}, tmp_path / "unknown.safetensors")
    save_file({"conv_first.weight": torch.zeros(8, 3, 3, 3), "body.0.rdb1.conv1.weight": torch.zeros(4, 8, 3, 3),
               "conv_last.weight": torch.zeros(3, 8, 3, 3)}, tmp_path / "sr.safetensors")
    (tmp_path / "corrupt.pth").write_bytes(b"\x80\x02not a pickle at all")
    (tmp_path / "corrupt.onnx").write_bytes(b"not a protobuf")
    for name, message in [("unknown.safetensors", "holds no known network"),
                          ("sr.safetensors", "holds a rrdbnet network, expected mmrb or gpen or gfpgan"),
                          ("corrupt.pth", "corrupt"), ("corrupt.onnx", "cannot load .* as an ONNX face restorer"),
                          ("missing.pth", "does not exist")]:
        with pytest.raises(WeightsError, match=message) as error:
            make_prior(str(tmp_path / name))
        assert "\n" not in str(error.value)


def test_prior_options_are_parsed_and_checked_against_the_prior() -> None:
    assert parse_prior_options(["w=0.7"]) == {"w": 0.7}
    for bad in ("w", "w=high", "=1"):
        with pytest.raises(ConfigError, match="expected NAME=NUMBER"):
            parse_prior_options([bad])
    with pytest.raises(ConfigError, match="unknown for gpen .its options: none"):
        make_prior(str(GPEN_FIXTURE), options={"w": 0.7})
    with pytest.raises(ConfigError, match="takes no options"):
        make_prior("numpy:sqrt", options={"w": 0.7})


def test_codeformer_fidelity_is_checked_against_its_range() -> None:
    from f2n.runtime.face_prior import resolve_options
    from f2n.runtime.prior_conventions import CONVENTIONS

    assert resolve_options(CONVENTIONS["codeformer"], {}, "codeformer") == {"w": 0.5}
    with pytest.raises(ConfigError, match=r"w must lie in \[0.0, 1.0\]"):
        resolve_options(CONVENTIONS["codeformer"], {"w": 1.5}, "codeformer")


def test_the_registry_checks_an_unpinned_prior_by_its_architecture(tmp_path: Path) -> None:
    from f2n.weights.registry import find_spec

    torch.manual_seed(0)
    path = tmp_path / "RestoreFormer.pth"
    torch.save({"params_ema": _restoreformer().state_dict()}, path)
    check_loads(find_spec("restoreformer"), path)
    with pytest.raises(WeightsError, match="holds a gpen network, expected restoreformer"):
        check_loads(find_spec("restoreformer"), GPEN_FIXTURE)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (autocast)")
def test_a_batch_that_overflows_in_half_precision_is_redone_in_float32() -> None:
    from f2n.runtime.prior_conventions import PriorConventions
    from f2n.runtime.torch_prior import TorchFacePrior

    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)).cuda()
    with torch.no_grad():  # 27 * 300 * 27 * 300 = 6.6e7: inf in float16, fine in float32; scaled back down after
        for conv in net:
            conv.weight.fill_(300.0)
            conv.bias.zero_()
    conventions = PriorConventions("toy", 16, lambda model, x, options: model(x) / 6.6e7,
                                   autocast=(torch.float16,))
    prior = TorchFacePrior(net, conventions, name="toy", options={}, provenance={}, device="cuda")
    faces = np.full((1, 16, 16, 3), 0.9, np.float32)
    restored = prior.restore(faces, np.zeros((1, 2, 3)))
    assert np.isfinite(restored).all() and restored[0, 8, 8].min() > 0.5
