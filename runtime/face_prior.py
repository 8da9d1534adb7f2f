"""Face priors: what turns aligned LQ faces into restored faces.

Every prior takes a batch of aligned faces, (N, S, S, 3) float32 RGB in [0, 1], together
with the affines that map the x4 canvas onto each aligned face (an oracle needs them to
cut the same face out of a ground-truth x4 image), and returns the same shape. Network
priors (:class:`~f2n.runtime.torch_prior.TorchFacePrior`,
:class:`~f2n.runtime.onnx_prior.OnnxFacePrior`) convert to each network's own conventions
(:mod:`f2n.runtime.prior_conventions`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from f2n.errors import ConfigError, InputImageError, WeightsError
from f2n.runtime.face_align import face_roi, warp_face
from f2n.runtime.prior_conventions import CONVENTIONS, PRIOR_NAMES, PriorConventions
from f2n.runtime.torch_prior import TorchFacePrior

RestoreFn = Callable[[np.ndarray], np.ndarray]
ORACLE_PREFIXES = ("oracle:", "oracle-restored:")  # a ground truth's faces: one photo's run only


class FacePrior(Protocol):
    name: str
    provenance: dict[str, str]  # what the report records: file, sha256, architecture, options

    def restore(self, aligned_faces: np.ndarray, affines_x4: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) aligned LQ faces + (N, 2, 3) canvas->face affines -> (N, S, S, 3) restored."""


class OraclePrior:
    """Cuts each face out of a known ground-truth x4 image with the same alignment:
    an upper bound for the prior, and a geometry check for the stage."""

    name = "oracle"

    def __init__(self, ground_truth_x4: np.ndarray, provenance: Mapping[str, str] | None = None) -> None:
        self.provenance = dict(provenance or {})
        if ground_truth_x4.ndim != 3 or ground_truth_x4.shape[2] != 3:
            raise InputImageError(f"oracle ground truth must be (H, W, 3), got {tuple(ground_truth_x4.shape)}")
        self.ground_truth_x4 = ground_truth_x4.astype(np.float32)

    def restore(self, aligned_faces: np.ndarray, affines_x4: np.ndarray) -> np.ndarray:
        size = aligned_faces.shape[1]
        return np.stack([warp_face(self.ground_truth_x4, affine, size) for affine in affines_x4]).astype(np.float32)


class OracleRestoredPrior:
    """A realistic imperfect prior that needs no GPEN: the ground truth around each face,
    downscaled x4 cleanly (bicubic) and restored by the base SR network itself, then aligned
    like the oracle. Plausible and sharp, but not the ground truth in its details, as real
    restorers are (docs/adaptation.md). Costs one base-network pass over each face's area.
    ``sr_model`` is only read (``inference_mode``): it may be the pipeline's own θ."""

    name = "oracle-restored"

    def __init__(self, ground_truth_x4: np.ndarray, sr_model: torch.nn.Module,
                 provenance: Mapping[str, str] | None = None) -> None:
        self.ground_truth_x4 = OraclePrior(ground_truth_x4).ground_truth_x4
        self.sr_model = sr_model
        self.provenance = dict(provenance or {})

    @torch.inference_mode()
    def restore(self, aligned_faces: np.ndarray, affines_x4: np.ndarray) -> np.ndarray:
        import cv2

        size = aligned_faces.shape[1]
        parameter = next(self.sr_model.parameters())
        faces = []
        for affine in affines_x4:
            x0, y0, x1, y1 = face_roi(size, cv2.invertAffineTransform(affine), self.ground_truth_x4.shape[:2])
            x1, y1 = x0 + max(4, (x1 - x0) // 4 * 4), y0 + max(4, (y1 - y0) // 4 * 4)  # whole LQ pixels
            crop = self.ground_truth_x4[y0:y1, x0:x1]
            small = cv2.resize(crop, (crop.shape[1] // 4, crop.shape[0] // 4), interpolation=cv2.INTER_CUBIC)
            batch = torch.from_numpy(np.clip(small, 0, 1)).permute(2, 0, 1)[None].to(parameter.device, parameter.dtype)
            restored = self.sr_model(batch)[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            # the affine maps canvas pixels; the crop starts at (x0, y0)
            shifted = np.concatenate([affine[:, :2], affine[:, :2] @ np.array([[x0], [y0]]) + affine[:, 2:]], axis=1)
            faces.append(warp_face(restored, shifted, size))
        return np.stack(faces).astype(np.float32)


class CallablePrior:
    """Any restorer ``fn(aligned_faces) -> restored_faces`` working on (N, S, S, 3) float arrays."""

    def __init__(self, fn: RestoreFn, name: str) -> None:
        self.fn = fn
        self.name = name
        self.provenance = {"callable": name}

    def restore(self, aligned_faces: np.ndarray, affines_x4: np.ndarray) -> np.ndarray:
        # The face stage checks shape, finiteness and range of every prior's output.
        return np.asarray(self.fn(aligned_faces), dtype=np.float32)


def _first_line(error: BaseException) -> str:
    return next(iter(str(error).strip().splitlines()), "")[:200]


PRIOR_FILE_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt", ".onnx")


def make_prior(spec: str, *, device: str | torch.device = "cpu", lq_shape: tuple[int, int] | None = None,
               options: Mapping[str, float] | None = None, sr_model: torch.nn.Module | None = None,
               sr_provenance: Mapping[str, str] | None = None) -> FacePrior:
    """A face prior from ``--prior``: a name (gpen, gpen-256, gfpgan, codeformer,
    restoreformer: registry weights, fetched on first use), a weight file (.pth /
    .safetensors of a recognised architecture, or an .onnx face restorer),
    ``oracle:PATH`` (ground-truth x4 image), ``oracle-restored:PATH`` (that ground truth's faces
    downscaled x4 and restored by ``sr_model``: the run's own SR network, on its device, named in
    the report by ``sr_provenance``) or ``package.module:callable``.

    ``lq_shape`` (H, W) of the LQ photo lets ``oracle:`` check that the ground truth is its x4.
    ``options``: ``--prior-option`` values (CodeFormer's fidelity ``w``).
    """
    options = dict(options or {})
    if spec in PRIOR_NAMES:
        from f2n.weights import weight_path

        weight_name, architecture = PRIOR_NAMES[spec]
        return load_prior_file(weight_path(weight_name), device=device, options=options, name=weight_name,
                               architecture=architecture)
    if _is_prior_file(spec):
        return load_prior_file(Path(spec), device=device, options=options)
    if options:
        raise ConfigError(f"--prior-option {', '.join(options)}: the prior {spec!r} takes no options")
    if spec.startswith("oracle-restored:"):
        if sr_model is None:  # a silent stock network would restore with other weights than the run's
            raise ConfigError(f"--prior {spec}: the oracle-restored prior needs the SR network it restores with")
        oracle = make_prior("oracle:" + spec[len("oracle-restored:"):], lq_shape=lq_shape)
        return OracleRestoredPrior(oracle.ground_truth_x4, sr_model,
                                   provenance={**oracle.provenance, **(sr_provenance or {})})
    if spec.startswith("oracle:"):
        from f2n.fileio import sha256_file
        from f2n.runtime.images import read_image

        path = Path(spec[len("oracle:"):])
        ground_truth = read_image(path).rgb
        if lq_shape is not None and ground_truth.shape[:2] != (4 * lq_shape[0], 4 * lq_shape[1]):
            raise ConfigError(f"oracle image is {ground_truth.shape[1]}x{ground_truth.shape[0]}, "
                              f"expected the x4 size {4 * lq_shape[1]}x{4 * lq_shape[0]}")
        return OraclePrior(ground_truth, provenance={"ground_truth": str(path), "sha256": sha256_file(path)})
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"unknown face prior {spec!r}; expected one of {', '.join(PRIOR_NAMES)}, a .pth/.safetensors/"
                          ".onnx file, 'oracle:PATH' or 'module.path:callable'")
    try:
        fn = getattr(importlib.import_module(module_name), attribute)
    except Exception as error:  # the module is user code: a SyntaxError or any raise at import
        raise ConfigError(f"cannot load face prior {spec!r}: {type(error).__name__}: {_first_line(error)}") from None
    if not callable(fn):
        raise ConfigError(f"face prior {spec!r} is a {type(fn).__name__}, expected a callable")
    return CallablePrior(fn, name=spec)


def load_prior_file(path: Path, *, device: str | torch.device = "cpu", options: Mapping[str, float] | None = None,
                    name: str | None = None, architecture: str | None = None, batch_size: int = 4) -> FacePrior:
    """A face prior from a weight file, its architecture recognised from its keys (or an
    .onnx graph); ``architecture`` refuses any other. A user's file is never refused for
    its hash: its SHA-256 is recorded in the prior's provenance (and so in the report)."""
    from f2n.fileio import sha256_file
    from f2n.weights import load_state_dict_file
    from f2n.weights.networks import face_restorer_names, load_network

    if not path.is_file():
        raise WeightsError(f"face prior file {path} does not exist")
    provenance = {"file": str(path), "sha256": sha256_file(path)}
    if path.suffix.lower() == ".onnx":
        if options:
            raise ConfigError(f"--prior-option {', '.join(options)}: an ONNX prior takes no options")
        from f2n.runtime.onnx_prior import OnnxFacePrior

        return OnnxFacePrior(path, provenance={**provenance, "architecture": "onnx"}, device=device,
                             batch_size=batch_size)
    state = load_state_dict_file(path)  # WeightsError when missing or corrupt
    architecture, model = load_network(state, path, expected=architecture or face_restorer_names())
    conventions = CONVENTIONS[architecture]
    chosen = resolve_options(conventions, options or {}, architecture)
    label = name or (f"gpen-bfr-{model.size}" if architecture == "gpen" else architecture)
    provenance.update(architecture=architecture, **{f"option.{key}": repr(value) for key, value in chosen.items()})
    return TorchFacePrior(model, conventions, name=label, options=chosen, provenance=provenance, device=device,
                          batch_size=batch_size)


def resolve_options(conventions: PriorConventions, given: Mapping[str, float], architecture: str) -> dict[str, float]:
    """The prior's option defaults overridden by ``given``, each checked against its range."""
    unknown = sorted(set(given) - set(conventions.options))
    if unknown:
        known = ", ".join(conventions.options) or "none"
        raise ConfigError(f"--prior-option {', '.join(unknown)}: unknown for {architecture} (its options: {known})")
    chosen = {}
    for key, (default, low, high) in conventions.options.items():
        value = float(given.get(key, default))
        if not low <= value <= high:
            raise ConfigError(f"--prior-option {key}={value}: {architecture}'s {key} must lie in [{low}, {high}]")
        chosen[key] = value
    return chosen


def parse_prior_options(items: Iterable[str]) -> dict[str, float]:
    """``("w=0.7", ...)`` from ``--prior-option`` into {"w": 0.7}."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            options[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--prior-option {item!r}: expected NAME=NUMBER, such as w=0.7") from None
    return options


def _is_prior_file(spec: str) -> bool:
    """A path, by its suffix or because it exists (module:callable and oracle: are not)."""
    if spec.startswith(ORACLE_PREFIXES):
        return False
    return Path(spec).suffix.lower() in PRIOR_FILE_SUFFIXES or Path(spec).is_file()
