"""f2n-adapt-and-run --demo, end to end with a tiny network (the real-weights demo is
the README's command; it takes minutes on a CPU)."""

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from f2n.runtime import cli
from f2n.runtime.demo import demo_pair, psnr


def test_demo_pair_is_fixed_and_degraded() -> None:
    gt, lq = demo_pair()
    again_gt, again_lq = demo_pair()
    assert gt.shape == (256, 256, 3) and lq.shape == (64, 64, 3)
    np.testing.assert_array_equal(lq, again_lq)
    upscaled = np.kron(lq, np.ones((4, 4, 1), np.float32))
    assert 15 < psnr(upscaled, gt) < 30  # degraded, but the same picture


def test_demo_prints_psnrs_and_adapted_beats_base(tiny_weights: Path) -> None:
    result = CliRunner().invoke(cli.command, ["--demo", "--checkpoint", str(tiny_weights), "--steps", "10",
                                              "--lr", "0.01", "--optimizer", "adam"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {line[:40].strip(): [float(v) for v in line[40:].split()] for line in result.output.splitlines()
            if line[:40].strip() in ("bicubic", "base network", "adapted (oracle prior, upper bound)")}
    assert len(rows) == 3, result.output
    assert rows["adapted (oracle prior, upper bound)"][0] > rows["base network"][0]
    assert "adapted beats base" in result.output
    assert "adapted (oracle-restored, realistic)" in result.output  # the realistic prior beside the oracle
