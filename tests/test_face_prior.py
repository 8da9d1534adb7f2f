"""Face priors: the oracle cuts the ground truth with the x4 affine, plug-in restorers are
checked, specs are parsed, and missing GPEN weights give a WeightsError one-liner."""

from pathlib import Path

import numpy as np
import pytest

from f2n.errors import ConfigError, WeightsError
from f2n.runtime.face_align import (
    FFHQ_TEMPLATE_512,
    estimate_affine,
    face_template,
    scale_affine_to_canvas,
    warp_face,
)
from f2n.runtime.face_prior import CallablePrior, OraclePrior, make_prior
from f2n.runtime.images import write_image


def _faces_and_affines() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ground_truth = rng.random((160, 200, 3), dtype=np.float32)
    affine = estimate_affine(FFHQ_TEMPLATE_512 * 0.05 + [8, 6], face_template(128))
    affines_x4 = scale_affine_to_canvas(affine, 4)[None]
    return ground_truth, np.zeros((1, 128, 128, 3), np.float32), affines_x4


def test_oracle_gives_the_ground_truth_face_under_the_x4_affine() -> None:
    ground_truth, faces, affines_x4 = _faces_and_affines()
    restored = OraclePrior(ground_truth).restore(faces, affines_x4)
    assert restored.shape == faces.shape and restored.dtype == np.float32
    np.testing.assert_allclose(restored[0], warp_face(ground_truth, affines_x4[0], 128), atol=1e-6)


def test_callable_prior_returns_float32() -> None:
    # Shape, finiteness and range of every prior's output are the face stage's check (test_hostile_inputs).
    _, faces, affines_x4 = _faces_and_affines()
    restored = CallablePrior(lambda f: (f + 0.5).astype(np.float64), "brighter").restore(faces, affines_x4)
    assert restored.dtype == np.float32 and restored.max() == 0.5


def test_missing_gpen_weights_are_a_weights_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        make_prior(str(tmp_path / "GPEN-BFR-512.pth"))
    monkeypatch.setenv("F2N_OFFLINE", "1")  # the cache (F2N_HOME) is empty in tests
    with pytest.raises(WeightsError, match="gpen-bfr-512"):
        make_prior("gpen")


def test_prior_specs(tmp_path: Path) -> None:
    ground_truth, faces, affines_x4 = _faces_and_affines()
    write_image(tmp_path / "gt.png", ground_truth)
    oracle = make_prior(f"oracle:{tmp_path / 'gt.png'}", lq_shape=(40, 50))
    assert oracle.name == "oracle"
    with pytest.raises(ConfigError, match="expected the x4 size 160x120"):
        make_prior(f"oracle:{tmp_path / 'gt.png'}", lq_shape=(30, 40))
    plugged = make_prior("numpy:sqrt")
    np.testing.assert_allclose(plugged.restore(faces + 0.25, affines_x4), 0.5)
    for bad, message in [("bogus", "unknown face prior"), ("no_such_module_f2n:fn", "cannot load"),
                         ("numpy:pi", "expected a callable")]:
        with pytest.raises(ConfigError, match=message):
            make_prior(bad)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device (fp16/bf16 GPEN)")
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_gpen_prior_in_half_precision_on_cuda_is_close_to_fp32(tmp_path: Path, dtype_name: str) -> None:
    import torch
    from safetensors.torch import save_file

    from f2n.nets.gpen import GPEN

    from f2n.runtime.face_prior import load_prior_file

    torch.manual_seed(0)
    model = GPEN(size=256, narrow=0.25).eval()
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, tmp_path / "gpen.safetensors")
    faces = np.random.default_rng(0).random((2, 256, 256, 3), dtype=np.float32)
    reference = load_prior_file(tmp_path / "gpen.safetensors").restore(faces, np.zeros((2, 2, 3)))
    half = load_prior_file(tmp_path / "gpen.safetensors", device="cuda")
    half.autocast = getattr(torch, dtype_name)
    restored = half.restore(faces, np.zeros((2, 2, 3)))
    assert np.isfinite(restored).all()
    assert np.abs(restored - reference).mean() < 0.02


def test_every_prior_kind_carries_the_provenance_the_report_reads(tmp_path: Path) -> None:
    """A run's report records ``prior.provenance`` (FaceAdaptation.settings): a prior without it
    failed every adapted photo at the report, after the work was done."""
    import torch

    ground_truth = tmp_path / "gt.png"
    write_image(ground_truth, np.full((32, 32, 3), 0.5, np.float32))
    identity = torch.nn.Upsample(scale_factor=4)
    for spec in (f"oracle:{ground_truth}", f"oracle-restored:{ground_truth}", "numpy:copy"):
        prior = make_prior(spec, sr_model=identity, lq_shape=(8, 8))
        assert isinstance(prior.provenance, dict), spec
