"""Each face prior's conventions, in one place per prior: input size, value range,
colour order, options, licence and how its network is called.

Checked against the official inference code:
- GPEN (yangxy/GPEN face_model/face_gan.py): RGB, (x - 0.5) / 0.5, ``model(x)[0]`` is
  the face; size 512 (GPEN-BFR-512) or 256 (GPEN-BFR-256), read from the weights.
- GFPGAN (TencentARC/GFPGAN gfpgan/utils.py ``GFPGANer.enhance``): BGR->RGB, normalise
  to [-1, 1], ``net(x, return_rgb=False)[0]``, output clamped to [-1, 1] and mapped back.
  Its StyleGAN2 decoder draws fresh noise per call (``randomize_noise=True``): f2n seeds
  it per photo. spandrel's own descriptor feeds [0, 1] and takes the output as is —
  not the official convention, so the module is called here instead.
- CodeFormer (sczhou/CodeFormer inference_codeformer.py): the same normalisation,
  ``net(x, w=w, adain=True)[0]``; fidelity ``w`` in [0, 1], default 0.5.
- RestoreFormer (GFPGAN's release, run through ``GFPGANer``): the same as GFPGAN.
All four were trained and are run on faces aligned to the FFHQ 512 template that
facexlib uses (:data:`f2n.runtime.face.align.FFHQ_TEMPLATE_512`). GPEN's own demo
aligns to a different, tighter template (align_faces.py: ArcFace's 5 points squared
with 25 % inner padding); f2n keeps FFHQ for GPEN, whose training faces are FFHQ's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch import nn

Call = Callable[[nn.Module, torch.Tensor, Mapping[str, float]], torch.Tensor]


@dataclass(frozen=True)
class PriorConventions:
    """``size`` None: the network's own (GPEN's size is read from its weights).
    ``options``: the defaults of ``--prior-option NAME=VALUE``, with their allowed range.
    ``autocast``: the half dtypes the network tolerates under CUDA autocast (spandrel's
    descriptors: GFPGAN, CodeFormer and RestoreFormer bf16 only); a batch that comes out
    NaN/Inf is redone in float32."""

    architecture: str
    size: int | None
    call: Call
    value_range: tuple[float, float] = (-1.0, 1.0)
    colour_order: str = "RGB"
    options: Mapping[str, tuple[float, float, float]] = field(default_factory=lambda: MappingProxyType({}))
    license: str = ""
    autocast: tuple[torch.dtype, ...] = (torch.bfloat16,)


def _gpen(model: nn.Module, faces: torch.Tensor, options: Mapping[str, float]) -> torch.Tensor:
    return model(faces)


def _gfpgan(model: nn.Module, faces: torch.Tensor, options: Mapping[str, float]) -> torch.Tensor:
    return model(faces, return_rgb=False)[0]


def _codeformer(model: nn.Module, faces: torch.Tensor, options: Mapping[str, float]) -> torch.Tensor:
    return model(faces, weight=options["w"])[0]  # spandrel's forward: adain on, as the official inference


def _restoreformer(model: nn.Module, faces: torch.Tensor, options: Mapping[str, float]) -> torch.Tensor:
    return model(faces)[0]


CONVENTIONS: Mapping[str, PriorConventions] = MappingProxyType({
    "gpen": PriorConventions("gpen", None, _gpen, license="GPEN terms: academic and non-commercial use",
                             autocast=(torch.float16, torch.bfloat16)),
    # A restorer trained by f2n-train --method mmrb: GPEN's convention (its generator is GPEN's).
    "mmrb": PriorConventions("mmrb", None, _gpen, license="your training's; GPEN-initialised weights inherit GPEN's "
                             "academic and non-commercial terms", autocast=(torch.float16, torch.bfloat16)),
    "gfpgan": PriorConventions("gfpgan", 512, _gfpgan, license="Apache-2.0 (StyleGAN2 parts: NVIDIA licence)"),
    "codeformer": PriorConventions("codeformer", 512, _codeformer,
                                   options=MappingProxyType({"w": (0.5, 0.0, 1.0)}),
                                   license="NTU S-Lab License 1.0: non-commercial use only"),
    "restoreformer": PriorConventions("restoreformer", 512, _restoreformer, license="Apache-2.0"),
})

# --prior NAME -> (registry weight name, architecture)
PRIOR_NAMES: Mapping[str, tuple[str, str]] = MappingProxyType({
    "gpen": ("gpen-bfr-512", "gpen"),
    "gpen-512": ("gpen-bfr-512", "gpen"),
    "gpen-256": ("gpen-bfr-256", "gpen"),
    "gfpgan": ("gfpgan-v1.4", "gfpgan"),
    "codeformer": ("codeformer", "codeformer"),
    "restoreformer": ("restoreformer", "restoreformer"),
})
