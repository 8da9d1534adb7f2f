"""The degradation model: reproducible, shared by both images of a task, OOD differs."""

import json
import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from f2n.errors import InputImageError
from f2n.training.degradations import (
    GAUSSIAN_FAMILIES,
    DegradationParams,
    KernelSpec,
    NoiseSpec,
    StageParams,
    degrade,
    make_kernel,
    sample_params,
)


def _load(path, size: int) -> torch.Tensor:
    rgb = np.asarray(Image.open(path).convert("RGB"))[:size, :size]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def task_images(shared_data):
    """One task: an aligned face and a natural patch, small crops."""
    face = _load(sorted((shared_data / "faces_hq").glob("*.png"))[0], 160)
    natural = _load(sorted((shared_data / "natural_hq").glob("*.png"))[0], 128)
    return face, natural


def test_same_seed_same_params_and_json_round_trip():
    a, b = sample_params(123), sample_params(np.random.default_rng(123))
    assert a == b
    assert a != sample_params(124)
    assert DegradationParams.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def test_same_params_give_identical_output_on_both_task_images(task_images):
    for seed, ood in [(0, False), (1, False), (2, True)]:
        params = sample_params(seed, ood=ood)
        for img in task_images:
            first, second = degrade(img, params), degrade(img, params)
            assert torch.equal(first, second)
        # A different draw really changes the output.
        assert not torch.equal(degrade(task_images[0], params), degrade(task_images[0], sample_params(seed + 100)))


def test_output_shape_range_and_quantisation():
    hq = torch.rand(2, 3, 70, 93)
    for seed in range(6):
        lq = degrade(hq, sample_params(seed, ood=seed % 2 == 1))
        assert lq.shape == (2, 3, 17, 23) and lq.dtype == torch.float32
        assert float(lq.min()) >= 0 and float(lq.max()) <= 1
        assert torch.equal(lq, (lq * 255).round() / 255)


def test_ood_uses_motion_blur_and_speckle_iid_never_does():
    iid = [sample_params(s) for s in range(200)]
    ood = [sample_params(s, ood=True) for s in range(200)]
    assert {p.first.blur.family for p in ood} == {"motion"}
    assert {p.first.noise.kind for p in ood} == {p.second.noise.kind for p in ood} == {"speckle"}
    assert "motion" not in {p.first.blur.family for p in iid}
    assert {p.first.noise.kind for p in iid} == {"gaussian", "poisson"}


def test_sampling_follows_real_esrgan_probabilities():
    params = [sample_params(s) for s in range(2000)]
    families = Counter(p.first.blur.family for p in params)
    assert families["sinc"] / 2000 == pytest.approx(0.1, abs=0.03)
    assert families["iso"] / 2000 == pytest.approx(0.9 * 0.45, abs=0.04)
    assert sum(p.second.blur is None for p in params) / 2000 == pytest.approx(0.2, abs=0.03)
    assert sum(p.final_sinc.family == "pulse" for p in params) / 2000 == pytest.approx(0.2, abs=0.03)
    assert all(0.15 <= p.first.resize_factor <= 1.5 and 30 <= p.first.jpeg_quality <= 95 for p in params)
    gauss = [p.first.noise.strength * 255 for p in params if p.first.noise.kind == "gaussian"]
    assert 1 <= min(gauss) and max(gauss) <= 30


@pytest.mark.parametrize(
    "spec",
    [KernelSpec(f, 21, sigma_x=2.5, sigma_y=0.7, theta=0.6, beta=1.7) for f in GAUSSIAN_FAMILIES]
    + [KernelSpec("sinc", 13, omega_c=math.pi / 4), KernelSpec("motion", 15, theta=1.1, length=11.0)],
    ids=lambda s: s.family,
)
def test_kernels_are_normalised_and_point_symmetric(spec):
    k = make_kernel(spec)
    assert k.shape == (spec.size, spec.size)
    assert k.sum() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-12)
    if spec.family != "sinc":  # sinc has negative side lobes by design
        assert k.min() >= 0


def test_iso_gaussian_kernel_matches_the_formula():
    k = make_kernel(KernelSpec("iso", 9, sigma_x=1.3, sigma_y=1.3))
    g = np.exp(-0.5 * (np.arange(-4, 5) / 1.3) ** 2)
    np.testing.assert_allclose(k, np.outer(g, g) / np.outer(g, g).sum(), atol=1e-12)


def test_motion_kernel_is_a_line_along_theta():
    k = make_kernel(KernelSpec("motion", 15, theta=0.0, length=10.0))
    assert k[7].sum() == pytest.approx(1.0)  # horizontal: all weight on the centre row
    assert np.count_nonzero(k[7]) == 11


def test_identity_params_reduce_to_area_downscale():
    # Pulse kernels, no resize, zero noise, JPEG 100: only the final x1/4 area resize remains.
    stage = StageParams(KernelSpec("pulse", 1), 1.0, "area", NoiseSpec("gaussian", 0.0, False, 0), 100)
    params = DegradationParams(stage, replace(stage, resize_factor=4.0), KernelSpec("pulse", 1), "area", False)
    # Grey, so that JPEG's chroma subsampling has nothing to smear.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 96), indexing="ij")
    hq = (0.5 * (yy + xx)).expand(1, 3, 64, 96)
    expected = F.avg_pool2d(hq, 4)
    assert (degrade(hq, params) - expected).abs().max() < 4 / 255


def test_bad_input_raises_input_image_error():
    params = sample_params(0)
    with pytest.raises(InputImageError, match=r"expected \(N, 3, H, W\)"):
        degrade(torch.rand(3, 64, 64), params)
    with pytest.raises(InputImageError, match="expected a float"):
        degrade(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), params)
    with pytest.raises(InputImageError, match="at least 16 px"):
        degrade(torch.rand(1, 3, 12, 64), params)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_path_is_reproducible_and_close_to_cpu_without_noise():
    hq = torch.rand(2, 3, 128, 128)
    params = sample_params(5)
    gpu = degrade(hq.cuda(), params)
    assert gpu.device.type == "cuda" and gpu.shape == (2, 3, 32, 32)
    assert torch.equal(gpu, degrade(hq.cuda(), params))
    quiet = replace(
        params,
        first=replace(params.first, noise=replace(params.first.noise, strength=0.0)),
        second=replace(params.second, noise=replace(params.second.noise, strength=0.0)),
    )
    # Without noise the device must not matter beyond float rounding.
    assert (degrade(hq.cuda(), quiet).cpu() - degrade(hq, quiet)).abs().mean() < 1 / 255
