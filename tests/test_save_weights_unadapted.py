"""Issue 26: ``--save-weights`` when the photo is not adapted (the guard kept θ, no face). It
used to write nothing; the image was written, so the next run skipped the photo and the
weights asked for never appeared. Now θ is written, marked as not adapted, with the reason."""

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from safetensors import safe_open

from f2n.runtime import cli
from f2n.runtime.images import write_image
from f2n.weights import load_state_dict_file


def test_a_photo_that_is_not_adapted_still_gets_its_weights_file(tmp_path: Path, tiny_weights: Path) -> None:
    photo, out, theta = tmp_path / "flat.png", tmp_path / "out.png", tmp_path / "theta.safetensors"
    write_image(photo, np.full((24, 20, 3), 0.4, np.float32))  # no face: nothing to adapt to
    result = CliRunner().invoke(cli.command, [str(photo), "--out", str(out), "--save-weights", str(theta),
                                              "--checkpoint", str(tiny_weights), "--prior", "numpy:copy",
                                              "--tile", "32", "--tile-overlap", "8", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and theta.is_file()
    with safe_open(str(theta), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["adapted"] == "false" and metadata["not_adapted_reason"]
    saved, base = load_state_dict_file(theta), load_state_dict_file(tiny_weights)
    assert saved.keys() == base.keys() and all(saved[k].equal(base[k].float()) for k in base)  # θ itself
