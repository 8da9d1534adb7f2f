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
from f2n.eval.metrics import metrics_table
from f2n.export.torch_engine import TorchEngine
from f2n.runtime.adapt import AdaptConfig, adapt, guard_decision
from f2n.runtime.face_patches import PatchConfig
from f2n.runtime.face_prior import FacePrior, OraclePrior, OracleRestoredPrior
from f2n.runtime.face_regions import mask_canvas
from f2n.runtime.face_stage import FaceStageConfig, FaceStageResult, run_face_stage
from f2n.runtime.redegnet import NaturalBank, ReDegNetConfig, ReDegNets, synthesise_pairs
from f2n.runtime.tiling import tiled_upscale
from f2n.runtime.types import PatchBatch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PHOTO_DIRS = (DATA / "photos_tune", DATA / "photos_hq")
SCREEN_PHOTOS = ("img3.png", "couple.png")


@dataclass(frozen=True)
class Setting:
    """One adaptation recipe: AdaptConfig options plus the pairs' source, size and count."""

    adapt: AdaptConfig
    patch_size: int = 16  # LQ pixels
    patches_per_face: int = 8
    method: str = "faces"  # or "redegnet" / "redegnet-untrained": synthetic natural pairs (module docstring)
    natural_pairs: int = ReDegNetConfig().natural_pairs  # redegnet only
    held_out_faces: bool = False  # redegnet only: early stopping and the guard on the face pairs


_BASE = AdaptConfig(steps=10, lr=1e-4, optimizer="adam", holdout=0.25, patience=2, guard=False)
SETTINGS: dict[str, Setting] = {
    "es": Setting(_BASE),  # all parameters, Adam 1e-4, early stopping on held-out pairs
    "lr3e-5": Setting(replace(_BASE, lr=3e-5)),
    "lora": Setting(replace(_BASE, params="lora", lr=1e-3)),
    "tail": Setting(replace(_BASE, params="tail", lr=1e-4)),
    "tail3e-4": Setting(replace(_BASE, params="tail", lr=3e-4)),
    "bias": Setting(replace(_BASE, params="bias", lr=1e-3)),
    "aug": Setting(replace(_BASE, augment=True)),
    "l2": Setting(replace(_BASE, l2_pull=10.0)),
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


def measure(out: np.ndarray, gt: np.ndarray, face: np.ndarray) -> dict[str, float]:
    """Y PSNR/SSIM/NIQE on the whole image and outside the faces, PSNR on the faces."""
    row = metrics_table({"out": out}, gt, face)["out"]
    row["psnr_face"] = metrics_table({"out": out}, gt, ~face, with_niqe=False)["out"]["psnr_nonface"]
    return row


def run_case(model: torch.nn.Module, case: Case, settings: Iterable[str], priors: Iterable[str], *,
             detector, tile: int, redegnet: ReDegNetStudy | None = None) -> Iterator[dict]:
    """Rows for one case: the base network's metrics, then every (prior, setting)."""
    engine = TorchEngine(model)
    base_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    base_sr = None
    for prior_name in priors:
        prior = _CachedPrior(make_study_prior(prior_name, case.gt, model))
        for setting_name in settings:
            setting = SETTINGS[setting_name]
            face_config = FaceStageConfig(patches=PatchConfig(lq_size=setting.patch_size, count=setting.patches_per_face))
            started = time.perf_counter()
            faces = run_face_stage(case.lq, detector=detector, prior=prior, config=face_config, seed=case.seed)
            common = {"photo": case.photo, "degradation": case.degradation, "seed": case.seed, "prior": prior_name,
                      "setting": setting_name, "lq_hw": list(case.lq.shape[:2])}
            if faces.patches is None:
                yield {**common, "error": faces.no_faces_reason}
                continue
            face = mask_canvas(faces.regions, case.gt.shape[:2]) > 0
            if base_sr is None:
                engine.set_weights(base_weights)
                base_sr = tiled_upscale(engine, case.lq, tile=tile, overlap=0)
            base = measure(base_sr, case.gt, face)
            pairs_started = time.perf_counter()
            pairs = study_pairs(setting, faces, redegnet, case.seed)
            pairs_seconds = time.perf_counter() - pairs_started  # ReDegNet's synthesis; 0 for face patches
            if isinstance(pairs, str):
                yield {**common, "error": pairs}
                continue
            result = adapt(model, pairs, setting.adapt, seed=case.seed,
                           held_out=faces.patches if setting.held_out_faces else None)
            held = result.holdout_losses
            guard_adapts, reason = guard_decision(held[0], min(held[1:])) if len(held) > 1 else (True, "")
            engine.set_weights(result.weights)
            adapted = measure(tiled_upscale(engine, case.lq, tile=tile, overlap=0), case.gt, face)
            engine.set_weights(base_weights)
            delta = {k: adapted[k] - base[k] for k in adapted}
            yield {**common, "faces": sum(f.used for f in faces.faces), "patches": len(pairs),
                   "base": base, "adapted": adapted, "delta": delta,
                   "guard_adapts": guard_adapts, "guard_reason": reason,
                   "delta_guarded": delta if guard_adapts else {k: 0.0 for k in delta},
                   "steps_taken": len(result.losses), "best_step": result.best_step,
                   "holdout_losses": list(held), "train_losses": list(result.losses),
                   "pairs_seconds": pairs_seconds, "adapt_seconds": sum(result.step_seconds),
                   "seconds": time.perf_counter() - started,
                   "config": {**asdict(setting.adapt), "patch_size": setting.patch_size,
                              "patches_per_face": setting.patches_per_face, "method": setting.method}}


def _photos(folders: Iterable[Path], names: tuple[str, ...]) -> list[Path]:
    every = sorted(p for folder in folders for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg"))
    return [p for p in every if not names or p.name in names]


# --------------------------------------------------------------------------- tables


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summary_table(rows: list[dict]) -> str:
    """Means over cases per (prior, degradation, setting), plus the worst case's non-face Δ."""
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        if "delta" in row:
            cells.setdefault((row["prior"], row["degradation"], row["setting"]), []).append(row)
    lines = ["| prior | degr. | setting | cases | Δ PSNR whole | Δ non-face | Δ face | Δ SSIM | Δ NIQE | worst Δ non-face "
             "| guard kept θ′ | Δ non-face guarded | worst guarded | steps taken (best) | s pairs + inner loop |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (prior, degradation, setting), group in sorted(cells.items()):
        d = lambda key, field="delta": _mean([r[field][key] for r in group])  # noqa: E731
        worst = min(r["delta"]["psnr_nonface"] for r in group)
        worst_guarded = min(r["delta_guarded"]["psnr_nonface"] for r in group)
        kept = sum(r["guard_adapts"] for r in group)
        lines.append(f"| {prior} | {degradation} | {setting} | {len(group)} | {d('psnr'):+.3f} | {d('psnr_nonface'):+.3f} "
                     f"| {d('psnr_face'):+.3f} | {d('ssim'):+.4f} | {d('niqe'):+.3f} | {worst:+.3f} | {kept}/{len(group)} "
                     f"| {d('psnr_nonface', 'delta_guarded'):+.3f} | {worst_guarded:+.3f} "
                     f"| {_mean([r['steps_taken'] for r in group]):.1f} ({_mean([r['best_step'] for r in group]):.1f}) "
                     f"| {_mean([r.get('pairs_seconds', 0.0) for r in group]):.1f} + "
                     f"{_mean([r['adapt_seconds'] for r in group]):.1f} |")
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


def photo_table(rows: list[dict], setting: str) -> str:
    """Per case for one setting: base non-face PSNR and Δ non-face (guarded) for each prior."""
    lines = ["| photo | degr. | prior | base non-face dB | Δ non-face | Δ face | Δ NIQE | guard | Δ non-face guarded |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted((r for r in rows if r.get("setting") == setting and "delta" in r),
                    key=lambda r: (r["photo"], r["degradation"], r["prior"])):
        lines.append(f"| {r['photo']} | {r['degradation']} | {r['prior']} | {r['base']['psnr_nonface']:.2f} "
                     f"| {r['delta']['psnr_nonface']:+.3f} | {r['delta']['psnr_face']:+.3f} | {r['delta']['niqe']:+.3f} "
                     f"| {'θ′' if r['guard_adapts'] else 'θ'} | {r['delta_guarded']['psnr_nonface']:+.3f} |")
    return "\n".join(lines)


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
def run_command(out: Path, stage: str, settings: tuple[str, ...], photos: tuple[str, ...],
                photo_dirs: tuple[Path, ...], seeds: tuple[int, ...], priors: tuple[str, ...],
                degradations: tuple[str, ...], lq_size: int, face_lq: int, checkpoint: str,
                redegnet_weights: Path | None, natural_bank: Path, redegnet_seed: int) -> None:
    """Append the study's rows to OUT."""
    from f2n.runtime.face_detect import RetinaFaceDetector
    from f2n.weights import load_sr_network

    screen = stage == "screen"
    settings = settings or (SCREEN_SETTINGS if screen else ("es",))
    priors = priors or (("oracle-restored",) if screen else PRIORS)
    degradations = degradations or (("iid",) if screen else ("iid", "ood"))
    wants_redegnet = any(SETTINGS[name].method in REDEGNET_METHODS for name in settings)
    if wants_redegnet and redegnet_weights is None:
        raise ConfigError("the redeg* settings need --redegnet-weights DIR (docs/redegnet.md)")
    redegnet = ReDegNetStudy.load(redegnet_weights, natural_bank, redegnet_seed) if wants_redegnet else None
    model = load_sr_network(checkpoint).model.eval()
    detector = RetinaFaceDetector()
    for photo in _photos(photo_dirs or PHOTO_DIRS, photos or (SCREEN_PHOTOS if screen else ())):
        for seed in seeds or (0,):
            for degradation in degradations:
                case = make_case(photo, degradation, seed, lq_size=lq_size, face_lq=face_lq, detector=detector)
                if case is None:
                    rows: Iterable[dict] = [{"photo": photo.name, "degradation": degradation, "error": "no face"}]
                else:
                    rows = run_case(model, case, settings, priors, detector=detector, tile=lq_size,  # one pass
                                    redegnet=redegnet)
                for row in rows:
                    row = {"stage": stage, **row}
                    with out.open("a", encoding="utf-8") as handle:
                        handle.write(json.dumps(row) + "\n")
                    click.echo(json.dumps({k: row.get(k) for k in ("photo", "degradation", "prior", "setting",
                                                                    "delta_guarded", "steps_taken", "seconds")}))


@cli.command()
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--per-photo", "per_photo", multiple=True, help="Also a per-case table for these settings.")
def table(results: Path, per_photo: tuple[str, ...]) -> None:
    """Print the markdown tables of a study run."""
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    click.echo(summary_table(rows))
    survival = survival_lines(rows)
    if survival:
        click.echo("\n" + "\n".join(survival))
    for setting in per_photo:
        click.echo(f"\nPer case, setting {setting}:\n")
        click.echo(photo_table(rows, setting))


if __name__ == "__main__":
    cli()
