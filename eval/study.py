"""The adaptation study (issue 16, docs/adaptation.md): how much test-time adaptation of the
stock network helps, per setting, with the oracle prior (the ground-truth face, an upper
bound) and the realistic ``oracle-restored`` prior, with and without the never-worse guard.

    python -m f2n.eval.study run --out study.jsonl --stage screen   # settings on a subset
    python -m f2n.eval.study run --out study.jsonl --stage final --setting es --setting tail
    python -m f2n.eval.study table study.jsonl

(also ``f2n-eval study ...``). Each case is a photo from ``../shared/data/photos_tune`` or
``photos_hq``, rescaled so that its faces are about ``--face-lq`` LQ pixels wide, cut to an
``--lq-size`` LQ window around them and degraded with ``f2n.training.degradations``
(iid or ood, seeded). One row per (case, prior, setting) is appended as it finishes, so a
run cut short still tabulates. The guard's effect comes from the same run: the early-stopped
θ′ is measured, and the guard's decision (held-out loss below θ's) is recorded beside it.

The ``redeg*`` settings adapt the same θ by ReDegNet (issue 17, docs/redegnet.md) instead of on
face patches: the same faces and prior give Ω, ``--natural-bank`` the natural crops, and the
synthetic pairs go through the same inner loop. They need ``--redegnet-weights`` (the released
files or an ``f2n-train --method redegnet`` run); ``redeg-untrained`` runs the same recipe with
networks of the same shapes at the training run's initialisation, the control that says how
much of a gain is the learnt degradation and how much is fine-tuning on any natural pairs.
"""

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from f2n.command import Group
from f2n.errors import ConfigError
from f2n.eval.metrics import metrics_table, piqe_y
from f2n.eval.study_variants import StudyKnobs
from f2n.export.torch_engine import TorchEngine
from f2n.runtime.adapt import (AdaptConfig, adapt, band_energy_ratio, guard_decision, texture_guard_decision,
                               texture_ratio, with_strength)
from f2n.runtime.context_patches import TextureView, nonface_patches, texture_view
from f2n.runtime.face.patches import PatchConfig
from f2n.runtime.face.prior import FacePrior, OraclePrior, OracleRestoredPrior
from f2n.runtime.face.regions import mask_canvas
from f2n.runtime.face.stage import FaceStageConfig, FaceStageResult, run_face_stage
from f2n.runtime.redegnet import NaturalBank, ReDegNetConfig, ReDegNets, synthesise_pairs
from f2n.runtime.tiling import tiled_upscale
from f2n.runtime.types import PatchBatch
from f2n.weights.metasgd import MetaSgdCheckpoint, load_metasgd

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PHOTO_DIRS = (DATA / "photos_tune", DATA / "photos_tune_more")  # the 33 photos of issue 28 (8 + 25)
SCREEN_PHOTOS = ("img3.png", "couple.png")
SPLIT_SEED = 28  # issue 28: the held-out third is fixed by this seed (``split_photos``)
STRENGTHS = (1.0,)
BAND_SIGMA = 2.0  # output px: high band = Y − G_σ * Y (the texture the base network draws)


@dataclass(frozen=True)
class Setting:
    """One adaptation recipe: AdaptConfig options, the study's own (``knobs``), and the pairs'
    source, size and count."""

    adapt: AdaptConfig
    knobs: StudyKnobs = StudyKnobs()
    patch_size: int = 16  # LQ pixels
    patches_per_face: int = 8
    method: str = "faces"  # or "redegnet" / "redegnet-untrained": synthetic natural pairs (module docstring)
    natural_pairs: int = ReDegNetConfig().natural_pairs  # redegnet only
    held_out_faces: bool = False  # redegnet only: early stopping and the guard on the face pairs
    metasgd: bool = False  # the --metasgd checkpoint's step sizes (plain SGD, α ⊙ ∇L) and MaskNet


_BASE = AdaptConfig(steps=10, lr=1e-4, optimizer="adam", params="all", holdout=0.25, patience=2, guard=False)
SETTINGS: dict[str, Setting] = {
    "es": Setting(_BASE),  # all parameters, Adam 1e-4, early stopping on held-out pairs
    "lr3e-5": Setting(replace(_BASE, lr=3e-5)),
    "lora": Setting(replace(_BASE, lr=1e-3), StudyKnobs(params="lora")),
    "tail": Setting(replace(_BASE, lr=1e-4), StudyKnobs(params="tail")),
    "tail3e-4": Setting(replace(_BASE, lr=3e-4), StudyKnobs(params="tail")),
    "bias": Setting(replace(_BASE, params="bias", lr=1e-3)),
    # issue 28, on today's default (biases, Adam 1e-3, budget 10): objectives that keep texture
    "today": Setting(replace(AdaptConfig(), guard=False)),  # the runtime's defaults as of issue 16
    "today-bf16": Setting(replace(AdaptConfig(), guard=False, precision="bf16")),  # the same in bf16 autocast (issue 27)
    "lowpass": Setting(replace(AdaptConfig(), guard=False, lowpass_sigma=2.0)),
    "lowpass4": Setting(replace(AdaptConfig(), guard=False, lowpass_sigma=4.0)),
    "teacher": Setting(replace(AdaptConfig(), guard=False, teacher=1.0)),
    "lowpass-teacher": Setting(replace(AdaptConfig(), guard=False, lowpass_sigma=2.0, teacher=1.0)),
    # issue 28, second round: low-band L1 + the sliced Wasserstein texture term (f2n.texture_loss)
    "lowpass-swd": Setting(replace(AdaptConfig(), guard=False, lowpass_sigma=2.0, swd=1.0)),
    "lowpass-swd3": Setting(replace(AdaptConfig(), guard=False, lowpass_sigma=2.0, swd=3.0)),
    "aug": Setting(_BASE, StudyKnobs(augment=True)),
    "l2": Setting(_BASE, StudyKnobs(l2_pull=10.0)),
    "p32": Setting(_BASE, patch_size=32, patches_per_face=2),  # the pixels of 8 16-px pairs
    # ReDegNet: the CLI's default inner loop (biases, Adam 1e-3, early stopping); all parameters at
    # Adam 1e-4; and a ReDegNet†-like long fine-tune (MetaF2N's paper: hundreds of iterations per image).
    "redeg": Setting(replace(AdaptConfig(), guard=False), method="redegnet"),
    "redeg-all": Setting(_BASE, method="redegnet"),
    "redeg-long": Setting(replace(_BASE, steps=100, patience=100), method="redegnet"),
    "redeg-untrained": Setting(replace(AdaptConfig(), guard=False), method="redegnet-untrained"),
    # the same, stopped and guarded on the photo's real face pairs instead of held-out synthetic ones
    "redeg-faceheld": Setting(replace(AdaptConfig(), guard=False), method="redegnet", held_out_faces=True),
    "redeg-all-faceheld": Setting(_BASE, method="redegnet", held_out_faces=True),
    "redeg-untrained-faceheld": Setting(replace(AdaptConfig(), guard=False), method="redegnet-untrained",
                                        held_out_faces=True),
    # issue 28, third round: Meta-SGD (f2n.training.metasgd) — the learnt per-bias step sizes and MaskNet;
    # one step as trained (Alg. 2 with n = 1), or today's budget of 10 with early stopping
    "metasgd": Setting(replace(AdaptConfig(), guard=False, optimizer="sgd", steps=1), metasgd=True),
    "metasgd-es": Setting(replace(AdaptConfig(), guard=False, optimizer="sgd"), metasgd=True),
}
REDEGNET_METHODS = ("redegnet", "redegnet-untrained")
SCREEN_SETTINGS = ("es", "tail", "lora", "bias", "aug", "l2")
PRIORS = ("oracle", "oracle-restored")


@dataclass(frozen=True)
class Case:
    photo: str
    degradation: str
    seed: int
    gt: np.ndarray = field(repr=False)  # (4h, 4w, 3) float32
    lq: np.ndarray = field(repr=False)  # (h, w, 3) float32


def make_case(photo: Path, degradation: str, seed: int, *, lq_size: int, face_lq: int, detector) -> Case | None:
    """The photo rescaled so its widest face is ``face_lq`` LQ px, cut to a 4·``lq_size``
    window centred on its faces, and degraded. None when no face is found."""
    from f2n.runtime.images import read_image
    from f2n.training.degradations import degrade, sample_params

    rgb = read_image(photo).rgb
    found = detector(rgb)
    keep = found.scores >= 0.9
    if not keep.any():
        return None
    boxes = found.boxes[keep]
    factor = min(1.0, 4 * face_lq / float((boxes[:, 2] - boxes[:, 0]).max()))
    size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
    scaled = np.clip(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), 0, 1)
    centre = ((boxes[:, :2] + boxes[:, 2:]) / 2).mean(axis=0) * factor
    window = 4 * lq_size
    x0, y0 = (int(np.clip(c - window / 2, 0, max(0, s - window))) // 4 * 4 for c, s in zip(centre, size))
    gt = np.ascontiguousarray(scaled[y0:y0 + window, x0:x0 + window])
    gt = gt[: gt.shape[0] // 4 * 4, : gt.shape[1] // 4 * 4]
    params = sample_params(seed, ood=degradation == "ood")
    lq = degrade(torch.from_numpy(gt).permute(2, 0, 1)[None], params)[0].permute(1, 2, 0).numpy()
    return Case(photo.name, degradation, seed, gt, np.ascontiguousarray(lq))


def split_photos(names: Iterable[str], seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """(tuning, held-out check): a seeded third of the sorted names (rounded) is held out."""
    ordered = sorted(names)
    order = np.random.default_rng(seed).permutation(len(ordered))
    held = {ordered[i] for i in order[: round(len(ordered) / 3)]}
    return [n for n in ordered if n not in held], [n for n in ordered if n in held]


def high_band_energy(rgb: np.ndarray, keep: np.ndarray | None = None, sigma: float = BAND_SIGMA) -> float:
    """mean((Y − G_σ * Y)²) over ``keep`` pixels (all without it), Y the luma in [16, 235]."""
    from f2n.eval.metrics import rgb_to_y

    y = rgb_to_y(rgb)
    band = y - cv2.GaussianBlur(y, (0, 0), sigma)
    return float((band ** 2).mean() if keep is None else (band[keep] ** 2).mean())


def mix_bands(adapted: np.ndarray, base: np.ndarray, sigma: float = BAND_SIGMA) -> np.ndarray:
    """Output-space mixing, the baseline row: low band of f(θ′) plus high band of f(θ)."""
    low = lambda x: cv2.GaussianBlur(x, (0, 0), sigma)  # noqa: E731
    return np.clip(low(adapted) + base - low(base), 0, 1).astype(np.float32)


def make_study_prior(name: str, gt: np.ndarray, model: torch.nn.Module) -> FacePrior:
    return OraclePrior(gt) if name == "oracle" else OracleRestoredPrior(gt, model)


class _CachedPrior:
    """The same faces restored once per case, whatever the patch settings."""

    def __init__(self, prior: FacePrior) -> None:
        self.prior, self.name, self._cache = prior, prior.name, {}

    def restore(self, aligned_faces: np.ndarray, affines_x4: np.ndarray) -> np.ndarray:
        key = affines_x4.tobytes()
        if key not in self._cache:
            self._cache[key] = self.prior.restore(aligned_faces, affines_x4)
        return self._cache[key]


@dataclass(frozen=True)
class ReDegNetStudy:
    """What the ``redeg*`` settings need: the networks (trained and at their initialisation) and the bank."""

    nets: dict[str, ReDegNets]  # by Setting.method
    bank: NaturalBank

    @classmethod
    def load(cls, weights: Path, bank: Path, seed: int = 0) -> "ReDegNetStudy":
        trained = ReDegNets.from_folder(weights)
        return cls({"redegnet": trained, "redegnet-untrained": untrained_like(trained, seed)}, NaturalBank(bank))


def untrained_like(nets: ReDegNets, seed: int) -> ReDegNets:
    """Networks of the same shapes as ``f2n-train --method redegnet --seed SEED`` starts them (same
    constructors, same order after the same seed)."""
    from f2n.weights.redegnet import degnet_hyperparameters, syn_encoder_hyperparameters, syn_generator_hyperparameters

    shapes = [(type(net), read(net.state_dict(), "trained")) for net, read in (
        (nets.degnet, degnet_hyperparameters), (nets.encoder, syn_encoder_hyperparameters),
        (nets.generator, syn_generator_hyperparameters))]
    torch.manual_seed(seed)
    return ReDegNets(*(kind(**hyper).eval() for kind, hyper in shapes))


def study_pairs(setting: Setting, faces: FaceStageResult, redegnet: ReDegNetStudy | None, seed: int) -> PatchBatch | str:
    """The inner loop's pairs for ``setting``: the face patches, or ReDegNet's synthetic natural pairs."""
    if setting.method == "faces":
        return faces.patches
    if redegnet is None:
        raise ConfigError(f"the {setting.method} settings need --redegnet-weights and --natural-bank")
    return synthesise_pairs(redegnet.nets[setting.method], faces, redegnet.bank,
                            ReDegNetConfig(natural_pairs=setting.natural_pairs), FaceStageConfig().face_size,
                            np.random.default_rng(seed), "cpu")


def measure(out: np.ndarray, gt: np.ndarray, face: np.ndarray, base: np.ndarray | None = None) -> dict[str, float]:
    """Y PSNR/SSIM/NIQE on the whole image and outside the faces, PSNR on the faces, PIQE of
    the whole image, and (with ``base``) the non-face high-band energy relative to ``base``'s."""
    out = np.round(out * 255) / 255  # as saved
    row = metrics_table({"out": out}, gt, face)["out"]
    row["psnr_face"] = metrics_table({"out": out}, gt, ~face, with_niqe=False)["out"]["psnr_nonface"]
    row["piqe"] = piqe_y(out)
    if base is not None:
        row["hf_ratio"] = high_band_energy(out, ~face) / max(high_band_energy(base, ~face), 1e-12)
    return row


def run_case(model: torch.nn.Module, case: Case, settings: Iterable[str], priors: Iterable[str], *,
             detector, tile: int, redegnet: ReDegNetStudy | None = None, strengths: Iterable[float] = STRENGTHS,
             mix: bool = False, metasgd: MetaSgdCheckpoint | None = None) -> Iterator[dict]:
    """Rows for one case: every (prior, setting, strength), each with the base network's metrics.
    Each strength α hands θ + α(θ′ − θ) from the same adaptation to the engine (one inference
    pass each); ``mix`` adds the output-space mixing baseline of the full-strength θ′ (setting
    ``NAME+mix``)."""
    engine = TorchEngine(model)
    base_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    base_sr = None
    for prior_name in priors:
        prior = _CachedPrior(make_study_prior(prior_name, case.gt, model))
        for setting_name in settings:
            setting = SETTINGS[setting_name]
            face_config = FaceStageConfig(patches=PatchConfig(lq_size=setting.patch_size, count=setting.patches_per_face))
            started = time.perf_counter()
            if setting.metasgd and metasgd is None:
                raise ConfigError(f"the {setting_name} setting needs --metasgd CHECKPOINT (f2n.training.metasgd)")
            masknet = metasgd.masknet if setting.metasgd else None
            variant = setting.knobs.variant()
            variant = replace(variant, step_sizes=metasgd.step_sizes) if setting.metasgd else variant
            faces = run_face_stage(case.lq, detector=detector, prior=prior, config=face_config, seed=case.seed,
                                   masknet=masknet)
            common = {"photo": case.photo, "degradation": case.degradation, "seed": case.seed, "prior": prior_name,
                      "setting": setting_name, "lq_hw": list(case.lq.shape[:2])}
            if faces.patches is None:
                yield {**common, "error": faces.no_faces_reason}
                continue
            face = mask_canvas(faces.regions, case.gt.shape[:2]) > 0
            if base_sr is None:
                engine.set_weights(base_weights)
                base_sr = tiled_upscale(engine, case.lq, tile=tile, overlap=0)
            base = measure(base_sr, case.gt, face, base_sr)
            pairs_started = time.perf_counter()
            pairs = study_pairs(setting, faces, redegnet, case.seed)
            pairs_seconds = time.perf_counter() - pairs_started  # ReDegNet's synthesis; 0 for face patches
            if isinstance(pairs, str):
                yield {**common, "error": pairs}
                continue
            boxes = [f.box for f in faces.faces]
            context = nonface_patches(case.lq, boxes, count=setting.adapt.context, size=setting.patch_size,
                                      seed=case.seed)
            # texture_ratio of the result: on the 16-px non-face patches (what issue 28's first round guarded on)
            result = adapt(model, pairs, setting.adapt, seed=case.seed, variant=variant,
                           held_out=faces.patches if setting.held_out_faces else None, context=context)
            adapt_seconds = time.perf_counter() - pairs_started - pairs_seconds
            held = result.holdout_losses
            guard_adapts, reason = guard_decision(held[0], min(held[1:])) if len(held) > 1 else (True, "")
            theta = {k: v.detach() for k, v in model.named_parameters()}
            full_sr = None
            view = texture_view(case.lq, boxes, seed=case.seed)  # what the whole-photo guard looks at
            outputs: list[tuple[str, float, np.ndarray]] = []
            for strength in strengths:
                engine.set_weights(with_strength(theta, result.weights, strength))
                sr = tiled_upscale(engine, case.lq, tile=tile, overlap=0)
                full_sr = sr if strength == 1 else full_sr
                outputs.append((setting_name if strength == 1 else f"{setting_name}@{strength:g}", strength, sr))
            if mix and full_sr is not None:
                outputs.append((f"{setting_name}+mix", 1.0, mix_bands(full_sr, base_sr)))
            engine.set_weights(base_weights)
            for name, strength, sr in outputs:
                ratio = guard_ratio(model, theta, with_strength(theta, result.weights, strength), view, sr, base_sr)
                adapted = measure(sr, case.gt, face, base_sr)
                delta = {k: adapted[k] - base[k] for k in adapted if k in base}
                yield {**common, "setting": name, "objective": setting_name, "strength": strength,
                       "faces": sum(f.used for f in faces.faces), "patches": len(pairs),
                       "context_patches": 0 if context is None else len(context), "texture_ratio": ratio,
                       "guard_pixels": 0 if view is None else view.pixels,
                       "texture_ratio_patches": result.texture_ratio if strength == 1 else None,
                       "base": base, "adapted": adapted, "delta": delta,
                       "guard_adapts": guard_adapts, "guard_reason": reason,
                       "delta_guarded": delta if guard_adapts else {k: 0.0 for k in delta},
                       "steps_taken": len(result.losses), "best_step": result.best_step,
                       "holdout_losses": list(held), "train_losses": list(result.losses),
                       "pairs_seconds": pairs_seconds, "adapt_seconds": adapt_seconds,
                       "seconds": time.perf_counter() - started,
                       "config": {**asdict(setting.adapt), **asdict(setting.knobs),
                                  "params": setting.knobs.params or setting.adapt.params, "patch_size": setting.patch_size,
                                  "patches_per_face": setting.patches_per_face, "method": setting.method,
                                  "metasgd": metasgd.record if setting.metasgd else None}}


def guard_ratio(model: torch.nn.Module, theta: dict, weights: dict, view: TextureView | None, sr: np.ndarray,
                base_sr: np.ndarray) -> float | None:
    """The whole-photo guard's texture ratio for an output: read off the outputs already made when
    the guard's view is the whole window (as ``texture_ratio`` would compute it), else computed."""
    if view is None:
        return None
    if view.keep is None or view.lq.shape[-2:] != (sr.shape[0] // 4, sr.shape[1] // 4):
        return texture_ratio(model, theta, weights, view)
    as_tensor = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]  # noqa: E731
    return band_energy_ratio(as_tensor(sr), as_tensor(base_sr), view.keep)


def _photos(folders: Iterable[Path], names: tuple[str, ...]) -> list[Path]:
    every = sorted(p for folder in folders for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg"))
    return [p for p in every if not names or p.name in names]


# --------------------------------------------------------------------------- tables


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def bootstrap_ci(values: list[float], *, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean over cases (resampled with replacement)."""
    data = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if len(data) < 2:
        return float("nan"), float("nan")
    means = data[np.random.default_rng(seed).integers(0, len(data), (draws, len(data)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def whole_photo_guard(row: dict, floor: float, ceiling: float = 0.0) -> bool:
    """Both guards on ``row``: the held-out face loss improved, and the non-face high-band energy
    over θ's (``texture_ratio``, on non-face LQ patches) is at least ``floor`` and at most
    ``ceiling`` (0: that bound off), as ``f2n.runtime.adapt.texture_guard_decision`` decides."""
    ratio = row.get("texture_ratio")
    texture_ok = ratio is None or texture_guard_decision(ratio, floor, ceiling)[0]
    return bool(row["guard_adapts"]) and texture_ok


def _guarded(row: dict, floor: float, ceiling: float = 0.0) -> dict[str, float]:
    return row["delta"] if whole_photo_guard(row, floor, ceiling) else {k: 0.0 for k in row["delta"]}


def _ci(values: list[float], digits: int = 3) -> str:
    lo, hi = bootstrap_ci(values)
    return f"{_mean(values):+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def summary_table(rows: list[dict], floor: float = 0.0, ceiling: float = 0.0) -> str:
    """Means over cases per (prior, degradation, setting), with 95 % bootstrap intervals, the worst
    case, and what the guards (held-out face loss, and the whole-photo guard at ``floor`` and
    ``ceiling``) hand on."""
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        if "delta" in row:
            cells.setdefault((row["prior"], row["degradation"], row["setting"]), []).append(row)
    lines = ["| prior | degr. | setting | cases | Δ non-face PSNR [95 % CI] | Δ non-face SSIM | Δ NIQE [95 % CI] "
             "| Δ PIQE | HF ratio | worst Δ non-face | worst Δ NIQE | guards kept θ′ | Δ non-face guarded "
             "| worst guarded | Δ NIQE guarded | s adapt |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (prior, degradation, setting), group in sorted(cells.items()):
        d = lambda key: [r["delta"].get(key, float("nan")) for r in group]  # noqa: E731
        guarded = [_guarded(r, floor, ceiling) for r in group]
        lines.append(
            f"| {prior} | {degradation} | {setting} | {len(group)} | {_ci(d('psnr_nonface'))} "
            f"| {_mean(d('ssim_nonface')):+.4f} | {_ci(d('niqe'))} | {_mean(d('piqe')):+.2f} "
            f"| {_mean([r['adapted'].get('hf_ratio', float('nan')) for r in group]):.3f} "
            f"| {min(d('psnr_nonface')):+.3f} | {max(d('niqe')):+.3f} "
            f"| {sum(whole_photo_guard(r, floor, ceiling) for r in group)}/{len(group)} "
            f"| {_mean([g['psnr_nonface'] for g in guarded]):+.3f} | {min(g['psnr_nonface'] for g in guarded):+.3f} "
            f"| {_mean([g['niqe'] for g in guarded]):+.3f} | {_mean([r['adapt_seconds'] for r in group]):.1f} |")
    return "\n".join(lines)


def survival_lines(rows: list[dict]) -> list[str]:
    """How much of the oracle's mean non-face gain the realistic prior keeps, on the cases
    (photo, degradation, seed, setting) measured with both."""
    by_case: dict[tuple, dict[str, float]] = {}
    for row in rows:
        if "delta" in row:
            key = (row["setting"], row["degradation"], row["photo"], row["seed"])
            by_case.setdefault(key, {})[row["prior"]] = row["delta"]["psnr_nonface"]
    lines = []
    for setting, degradation in sorted({key[:2] for key in by_case}):
        pairs = [v for k, v in by_case.items() if k[:2] == (setting, degradation) and len(v) == len(PRIORS)]
        if pairs:
            oracle, realistic = _mean([p["oracle"] for p in pairs]), _mean([p["oracle-restored"] for p in pairs])
            lines.append(f"- {setting}, {degradation}: oracle {oracle:+.3f} dB, oracle-restored {realistic:+.3f} dB "
                         f"non-face over {len(pairs)} case(s): {100 * realistic / oracle:.0f} % of the oracle's gain kept")
    return lines


def photo_table(rows: list[dict], setting: str, floor: float = 0.0, ceiling: float = 0.0) -> str:
    """Per case for one setting: the base network's figures and the adapted output's change."""
    lines = ["| photo | degr. | prior | seed | base non-face dB | Δ non-face | Δ face | Δ SSIM non-face | base NIQE "
             "| Δ NIQE | Δ PIQE | HF ratio | guard's ratio | 16-px patches' ratio | guards | Δ non-face guarded | s adapt |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted((r for r in rows if r.get("setting") == setting and "delta" in r),
                    key=lambda r: (r["photo"], r["degradation"], r["prior"], r["seed"])):
        ratio, patches = r.get("texture_ratio"), r.get("texture_ratio_patches")
        lines.append(f"| {r['photo']} | {r['degradation']} | {r['prior']} | {r['seed']} "
                     f"| {r['base']['psnr_nonface']:.2f} "
                     f"| {r['delta']['psnr_nonface']:+.3f} | {r['delta']['psnr_face']:+.3f} "
                     f"| {r['delta']['ssim_nonface']:+.4f} | {r['base']['niqe']:.2f} | {r['delta']['niqe']:+.3f} "
                     f"| {r['delta'].get('piqe', float('nan')):+.2f} | {r['adapted'].get('hf_ratio', float('nan')):.3f} "
                     f"| {'—' if ratio is None else f'{ratio:.3f}'} | {'—' if patches is None else f'{patches:.3f}'} "
                     f"| {'θ′' if whole_photo_guard(r, floor, ceiling) else 'θ'} "
                     f"| {_guarded(r, floor, ceiling)['psnr_nonface']:+.3f} | {r['adapt_seconds']:.1f} |")
    return "\n".join(lines)


def compare_lines(rows: list[dict], candidates: list[tuple[str, float, float]]) -> list[str]:
    """The decision table: per (prior, degradation), on the cases every candidate (setting name,
    whole-photo guard floor and ceiling) was measured on, the guarded mean and worst Δ non-face PSNR, the mean
    and worst Δ NIQE and the mean Δ PIQE; then whether each beats the first candidate on both means."""
    names = {name for name, _, _ in candidates}
    by_case: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        if "delta" in row and row["setting"] in names:
            key = (row["prior"], row["degradation"], row["photo"], row["seed"])
            by_case.setdefault(key, {})[row["setting"]] = row
    lines = ["| prior | degr. | setting (floor, ceiling) | cases | Δ non-face guarded [95 % CI] | worst | Δ NIQE guarded [95 % CI] "
             "| worst Δ NIQE | Δ PIQE guarded | kept θ′ |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    verdicts = []
    groups = sorted({key[:2] for key in by_case}) + sorted({(key[0], "iid+ood") for key in by_case})
    for prior, degradation in groups:  # each degradation, then both pooled (what the rule decides on)
        cases = [v for k, v in by_case.items()
                 if k[0] == prior and degradation in ("iid+ood", k[1]) and len(v) == len(names)]
        if not cases:
            continue
        means = []
        for name, floor, ceiling in candidates:
            guarded = [_guarded(case[name], floor, ceiling) for case in cases]
            psnr, niqe = [g["psnr_nonface"] for g in guarded], [g["niqe"] for g in guarded]
            means.append((_mean(psnr), _mean(niqe)))
            lines.append(f"| {prior} | {degradation} | {name} ({floor:g}, {ceiling:g}) | {len(cases)} | {_ci(psnr)} | {min(psnr):+.3f} "
                         f"| {_ci(niqe)} | {max(niqe):+.3f} | {_mean([g['piqe'] for g in guarded]):+.2f} "
                         f"| {sum(whole_photo_guard(case[name], floor, ceiling) for case in cases)}/{len(cases)} |")
        (ref_name, ref_floor, ref_ceiling), ref = candidates[0], means[0]
        for (name, floor, ceiling), mean in zip(candidates[1:], means[1:]):
            better = mean[0] > ref[0] and mean[1] < ref[1]
            verdicts.append(f"- {prior}, {degradation}: {name} ({floor:g}, {ceiling:g}) "
                            f"{'beats' if better else 'does not beat'} "
                            f"{ref_name} ({ref_floor:g}, {ref_ceiling:g}) on both means (Δ PSNR {mean[0]:+.3f} vs {ref[0]:+.3f} dB, "
                            f"Δ NIQE {mean[1]:+.3f} vs {ref[1]:+.3f})")
    return lines + [""] + verdicts


# --------------------------------------------------------------------------- CLI


@click.group(cls=Group)
def cli() -> None:
    """The adaptation study behind the defaults (docs/adaptation.md)."""


@cli.command("run")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="JSON-lines file, appended to.")
@click.option("--stage", type=click.Choice(["screen", "final"]), default="screen", show_default=True,
              help=f"screen: settings {', '.join(SCREEN_SETTINGS)} on {', '.join(SCREEN_PHOTOS)}, iid, realistic prior; "
                   "final: every photo, iid and ood, both priors.")
@click.option("--setting", "settings", type=click.Choice(list(SETTINGS)), multiple=True, help="[the stage's]")
@click.option("--photo", "photos", multiple=True, help="Photo file names [the stage's].")
@click.option("--photo-dir", "photo_dirs", type=click.Path(exists=True, file_okay=False, path_type=Path), multiple=True,
              help="[../shared/data/photos_tune, photos_hq]")
@click.option("--seed", "seeds", type=int, multiple=True, help="Degradation seeds [0].")
@click.option("--prior", "priors", type=click.Choice(PRIORS), multiple=True, help="[the stage's]")
@click.option("--degradation", "degradations", type=click.Choice(["iid", "ood"]), multiple=True, help="[the stage's]")
@click.option("--lq-size", type=int, default=80, show_default=True, help="LQ window side, px (CPU time).")
@click.option("--face-lq", type=int, default=32, show_default=True, help="Widest face, LQ px.")
@click.option("--checkpoint", default="realesrgan-x4plus", show_default=True)
@click.option("--redegnet-weights", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="redeg* settings: the released ReDegNet files or an f2n-train --method redegnet run.")
@click.option("--natural-bank", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=DATA / "natural_hq", show_default=True, help="redeg* settings: HQ natural images.")
@click.option("--redegnet-seed", type=int, default=0, show_default=True,
              help="redeg-untrained: the seed the training run started from.")
@click.option("--split", type=click.Choice(["all", "tune", "check"]), default="all", show_default=True,
              help=f"tune: the two thirds tuned on; check: the held-out third (split_photos, seed {SPLIT_SEED}).")
@click.option("--strength", "strengths", type=click.FloatRange(0, 1), multiple=True,
              help="Strengths α to measure from each adaptation: θ + α(θ′ − θ) [1].")
@click.option("--mix", is_flag=True, help="Also the output-space mixing baseline (low band of f(θ′), high of f(θ)).")
@click.option("--metasgd", "metasgd_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="metasgd* settings: a Meta-SGD checkpoint (python -m f2n.training.metasgd).")
def run_command(out: Path, stage: str, settings: tuple[str, ...], photos: tuple[str, ...],
                photo_dirs: tuple[Path, ...], seeds: tuple[int, ...], priors: tuple[str, ...],
                degradations: tuple[str, ...], lq_size: int, face_lq: int, checkpoint: str,
                redegnet_weights: Path | None, natural_bank: Path, redegnet_seed: int, split: str,
                strengths: tuple[float, ...], mix: bool, metasgd_path: Path | None) -> None:
    """Append the study's rows to OUT."""
    from f2n.runtime.face.detect import RetinaFaceDetector
    from f2n.weights import load_sr_network

    screen = stage == "screen"
    settings = settings or (SCREEN_SETTINGS if screen else ("es",))
    priors = priors or (("oracle-restored",) if screen else PRIORS)
    degradations = degradations or (("iid",) if screen else ("iid", "ood"))
    wants_redegnet = any(SETTINGS[name].method in REDEGNET_METHODS for name in settings)
    if wants_redegnet and redegnet_weights is None:
        raise ConfigError("the redeg* settings need --redegnet-weights DIR (docs/redegnet.md)")
    redegnet = ReDegNetStudy.load(redegnet_weights, natural_bank, redegnet_seed) if wants_redegnet else None
    if any(SETTINGS[name].metasgd for name in settings) and metasgd_path is None:
        raise ConfigError("the metasgd* settings need --metasgd CHECKPOINT (f2n.training.metasgd)")
    metasgd = load_metasgd(metasgd_path) if metasgd_path is not None else None
    model = load_sr_network(checkpoint).model.eval()
    detector = RetinaFaceDetector()
    chosen = _photos(photo_dirs or PHOTO_DIRS, photos or (SCREEN_PHOTOS if screen and split == "all" else ()))
    if split != "all":
        tune, check = split_photos(p.name for p in _photos(photo_dirs or PHOTO_DIRS, ()))
        chosen = [p for p in chosen if p.name in (tune if split == "tune" else check)]
    for seed in seeds or (0,):  # seeds outermost: a run cut short has every photo at the first seed
        for photo in chosen:
            for degradation in degradations:
                case = make_case(photo, degradation, seed, lq_size=lq_size, face_lq=face_lq, detector=detector)
                if case is None:
                    rows: Iterable[dict] = [{"photo": photo.name, "degradation": degradation, "error": "no face"}]
                else:
                    rows = run_case(model, case, settings, priors, detector=detector, tile=lq_size,  # one pass
                                    redegnet=redegnet, strengths=strengths or STRENGTHS, mix=mix,
                                    metasgd=metasgd)
                for row in rows:
                    row = {"stage": stage, **row}
                    with out.open("a", encoding="utf-8") as handle:
                        handle.write(json.dumps(row) + "\n")
                    click.echo(json.dumps({k: row.get(k) for k in ("photo", "degradation", "prior", "setting",
                                                                    "delta_guarded", "steps_taken", "seconds")}))


@cli.command()
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG to write.")
@click.option("--setting", "settings", type=click.Choice(list(SETTINGS)), multiple=True, default=("today", "lowpass"),
              show_default=True)
@click.option("--degradation", type=click.Choice(["iid", "ood"]), default="iid", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--prior", type=click.Choice(PRIORS), default="oracle-restored", show_default=True)
@click.option("--lq-size", type=int, default=80, show_default=True)
@click.option("--face-lq", type=int, default=24, show_default=True)
@click.option("--zoom-box", type=int, nargs=4, help="GT pixels y0 y1 x0 x1 of the zoomed crop [a non-face corner].")
def picture(photo: Path, out: Path, settings: tuple[str, ...], degradation: str, seed: int, prior: str, lq_size: int,
            face_lq: int, zoom_box: tuple[int, int, int, int] | None) -> None:
    """One case side by side: bicubic | base | each setting | ground truth, a zoomed crop below."""
    if any(SETTINGS[name].metasgd for name in settings):
        raise ConfigError("picture does not load a Meta-SGD checkpoint: use study run --metasgd for the metasgd settings")
    from f2n.eval.demo import comparison_picture
    from f2n.runtime.face.detect import RetinaFaceDetector
    from f2n.runtime.images import write_image
    from f2n.weights import load_sr_network

    model = load_sr_network("realesrgan-x4plus").model.eval()
    detector = RetinaFaceDetector()
    case = make_case(photo, degradation, seed, lq_size=lq_size, face_lq=face_lq, detector=detector)
    if case is None:
        raise ConfigError(f"{photo.name}: no face")
    engine = TorchEngine(model)
    panels = {"bicubic": np.clip(cv2.resize(case.lq, case.gt.shape[1::-1], interpolation=cv2.INTER_CUBIC), 0, 1),
              "base network": tiled_upscale(engine, case.lq, tile=lq_size, overlap=0)}
    study_prior = _CachedPrior(make_study_prior(prior, case.gt, model))
    config = FaceStageConfig(patches=PatchConfig(lq_size=16, count=8))  # as run_case's settings draw them
    faces = run_face_stage(case.lq, detector=detector, prior=study_prior, config=config, seed=case.seed)
    for name in settings:
        result = adapt(model, faces.patches, SETTINGS[name].adapt, seed=case.seed, variant=SETTINGS[name].knobs.variant())
        engine.set_weights(result.weights)
        panels[name] = tiled_upscale(engine, case.lq, tile=lq_size, overlap=0)
    panels["ground truth"] = case.gt
    side = case.gt.shape[0]
    box = zoom_box or (side - side // 4, side, 0, side // 4)  # bottom-left corner: the window's edge, not a face
    write_image(out, comparison_picture(panels, box, zoom=4).astype(np.float32) / 255)
    click.echo(str(out))


@cli.command()
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--candidate", "candidates", type=(str, float, float), multiple=True, required=True,
              help="A setting and its whole-photo guard floor and ceiling (0: off), e.g. --candidate lowpass 0.7 0; "
                   "the first is the reference to beat.")
def compare(results: Path, candidates: tuple[tuple[str, float, float], ...]) -> None:
    """The decision table: candidates against the first on the cases measured with all of them."""
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    click.echo("\n".join(compare_lines(rows, list(candidates))))


@cli.command()
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--per-photo", "per_photo", multiple=True, help="Also a per-case table for these settings.")
@click.option("--texture-floor", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="The whole-photo guard's floor for the guarded columns (0: the held-out face guard only).")
@click.option("--texture-ceiling", type=float, default=0.0, show_default=True,
              help="The whole-photo guard's ceiling for the guarded columns (0: off).")
def table(results: Path, per_photo: tuple[str, ...], texture_floor: float, texture_ceiling: float) -> None:
    """Print the markdown tables of a study run."""
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    click.echo(summary_table(rows, texture_floor, texture_ceiling))
    survival = survival_lines(rows)
    if survival:
        click.echo("\n" + "\n".join(survival))
    for setting in per_photo:
        click.echo(f"\nPer case, setting {setting}:\n")
        click.echo(photo_table(rows, setting, texture_floor, texture_ceiling))


if __name__ == "__main__":
    cli()
