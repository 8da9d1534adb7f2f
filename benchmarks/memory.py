"""The memory stage: peak resident memory of ``f2n-adapt-and-run`` on a photo with faces,
adapted against the same photo with ``--no-adapt``, each run in a fresh process.

The base run's peak is the x4 output canvas plus the engine's working set. The face stage
must work in face-sized memory (issue 18 item 4): an adapted run may peak at most
``TARGET_RATIO`` times the base run. The photo is 3 megapixels with 4 faces (scikit-image's
astronaut, four times), so the x4 canvas is 48 megapixels and anything the face stage made
at the photo's x4 size would show.

The prior is an identity ``module:callable`` prior (``numpy:copy``): it needs no weights and
its memory is that of the faces it is given, which is what a restoring prior's input and
output cost too (GPEN's own weights and activations are per face, not per photo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from f2n.errors import ConfigError

TARGET_RATIO = 1.2
PHOTO_HW = (1500, 2000)  # 3 megapixels
FACES = 4
PRIOR = "numpy:copy"
NETWORKS = ("tiny", "real")


@dataclass(frozen=True)
class MemoryResult:
    """Peak resident set sizes (MiB) of the two runs on one photo."""

    photo: str
    network: str
    settings: str
    faces_used: int
    adapted_mib: float
    base_mib: float

    @property
    def ratio(self) -> float:
        return self.adapted_mib / self.base_mib

    @property
    def within_target(self) -> bool:
        return self.ratio <= TARGET_RATIO


def four_face_photo(path: Path) -> Path:
    """A 2000x1500 PNG holding the astronaut four times (one face each, about 150 px wide)."""
    import skimage.data

    height, width = PHOTO_HW
    cell_h, cell_w = height // 2, width // 2
    face = cv2.resize(skimage.data.astronaut(), (cell_h, cell_h), interpolation=cv2.INTER_AREA)
    cell = cv2.copyMakeBorder(face, 0, 0, 0, cell_w - cell_h, cv2.BORDER_REFLECT)
    photo = np.concatenate([np.concatenate([cell, cell[:, ::-1]], axis=1)] * 2, axis=0)
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    return path


def tiny_checkpoint(path: Path) -> Path:
    """A seeded 1-block RRDBNet: the engine's working set stays small, so the canvases dominate
    both peaks and the comparison is the strictest."""
    import torch
    from safetensors.torch import save_file

    from f2n.nets import RRDBNet

    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in RRDBNet(num_block=1, num_feat=8, num_grow_ch=4).state_dict().items()},
              str(path))
    return path


# The child reads its own peak (VmHWM, Linux) as it exits. The kernel's ru_maxrss of a child is
# no good here: it starts from the parent's resident size at fork (a pytest run's 1 GB or more).
_CHILD = """
import atexit, os
def _write_peak():
    with open("/proc/self/status") as status:
        peak_kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["F2N_PEAK_FILE"], "w") as out:
        out.write(peak_kib)
atexit.register(_write_peak)
from f2n.runtime.cli import main
main()
"""


def peak_rss_mib(args: list[str], threads: int) -> float:
    """Run ``f2n-adapt-and-run ARGS`` in a fresh Python process; its peak resident memory in MiB."""
    with tempfile.TemporaryDirectory(prefix="f2n-bench-peak-") as folder:
        peak_file = Path(folder) / "peak_kib"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "F2N_PEAK_FILE": str(peak_file)}
        done = subprocess.run([sys.executable, "-c", _CHILD, *args], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"f2n-adapt-and-run {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
        return int(peak_file.read_text()) / 1024


def measure_memory(network: str = "tiny", steps: int = 2, threads: int = 1) -> MemoryResult:
    """Both runs on the four-face photo (``network``: ``tiny``, or ``real`` for Real-ESRGAN x4plus)."""
    if network not in NETWORKS:
        raise ConfigError(f"memory stage network must be one of {', '.join(NETWORKS)}, got {network!r}")
    with tempfile.TemporaryDirectory(prefix="f2n-bench-memory-") as folder:
        work = Path(folder)
        photo = four_face_photo(work / "four_faces.png")
        checkpoint = str(tiny_checkpoint(work / "tiny.safetensors")) if network == "tiny" else "realesrgan-x4plus"
        common = [str(photo), "--checkpoint", checkpoint, "--device", "cpu", "--no-progress", "--overwrite"]
        adapted_args = [*common, "--out", str(work / "adapted.png"), "--prior", PRIOR, "--steps", str(steps),
                        "--require-adaptation", "--report", str(work / "report.json")]
        adapted = peak_rss_mib(adapted_args, threads)
        faces_used = json.loads((work / "report.json").read_text())["photos"][0]["faces_used"]
        if faces_used != FACES:  # a run with fewer faces would measure too little
            raise RuntimeError(f"the memory photo should have {FACES} faces used, the run used {faces_used}")
        base = peak_rss_mib([*common, "--out", str(work / "base.png"), "--no-adapt"], threads)
    height, width = PHOTO_HW
    return MemoryResult(f"{width}x{height} ({width * height / 1e6:.0f} MP), {FACES} faces", network,
                        f"prior {PRIOR}, {steps} steps, default patches and tiles, {threads} thread(s)",
                        faces_used, round(adapted, 1), round(base, 1))


def markdown(result: MemoryResult, machine: str) -> str:
    verdict = "within" if result.within_target else "OVER"
    return "\n".join([
        f"Peak resident memory of `f2n-adapt-and-run`, each run in a fresh process, machine class `{machine}`.",
        f"Photo {result.photo}; network `{result.network}`; {result.settings}.",
        "",
        "| run | peak RSS |",
        "| --- | ---: |",
        f"| adapted from {result.faces_used} faces | {result.adapted_mib:.0f} MiB |",
        f"| `--no-adapt` | {result.base_mib:.0f} MiB |",
        f"| ratio (target <= {TARGET_RATIO}) | {result.ratio:.2f}, {verdict} the target |",
        "",
    ])
