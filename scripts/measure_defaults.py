"""Measure the adaptation defaults (steps n, learning rate α, optimiser) with the oracle
prior, and CPU fp32 vs bf16 autocast for the adaptation step. Results feed
docs/adaptation.md; re-run with

    python scripts/measure_defaults.py grid --out adapt_grid.jsonl [--long-side 128 ...]
    python scripts/measure_defaults.py table adapt_grid.jsonl
    python scripts/measure_defaults.py precision

A research script, not part of the installed package: it runs the pipeline that
f2n-adapt-and-run runs (:func:`f2n.runtime.build_pipeline`), snapshotting θ on the way.

Each grid row is one (photo, degradation, optimiser, α, n) with the PSNR of the base and
of the adapted network against the ground truth over the whole image, the faces and
the rest (non-face). n in {1, 5, 10, 20} are snapshots of one 20-step run. Rows are
appended as they finish, so a long run can be stopped and still tabulated.
"""

import json
import time
from collections.abc import Iterable
from pathlib import Path

import click
import cv2
import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

from f2n.runtime import (
    AdaptConfig,
    OraclePrior,
    PatchBatch,
    RetinaFaceDetector,
    adapt,
    build_pipeline,
    load_supported_network,
    make_engine,
    mask_canvas,
    masked_l1,
    read_image,
)
from f2n.eval.demo import region_psnrs
from f2n.weights import LoadedSR

GRID = (("sgd", 1e-2), ("adam", 1e-4), ("sgd", 1e-3), ("adam", 1e-5))  # likeliest first: a cut-short run still informs
SNAPSHOTS = (1, 5, 10, 20)
DEGRADATIONS = ("iid", "ood")
PHOTO_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos_hq"


def make_pair(photo: Path, degradation: str, seed: int, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth (downscaled so its long side is 4 x ``long_side``) and its x4 LQ."""
    from f2n.training.degradations import degrade, sample_params

    rgb = read_image(photo).rgb
    height, width = rgb.shape[:2]
    factor = 4 * long_side / max(height, width)
    size = (4 * round(width * factor / 4), 4 * round(height * factor / 4))
    gt = np.clip(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), 0, 1)
    params = sample_params(seed, ood=degradation == "ood")
    lq = degrade(torch.from_numpy(gt).permute(2, 0, 1)[None], params)[0].permute(1, 2, 0).numpy()
    return gt, np.ascontiguousarray(lq)


def measure_case(loaded: LoadedSR, gt: np.ndarray, lq: np.ndarray, *, patches_per_face: int,
                 grid: Iterable[tuple[str, float]], tile: int,
                 snapshots: tuple[int, ...] = SNAPSHOTS) -> Iterable[dict]:
    """Rows for one (photo, degradation): base first, then every grid cell's snapshots."""
    detections = RetinaFaceDetector()(lq)  # once: every grid cell's pipeline reuses it
    engine = make_engine("torch", loaded, device="cpu", precision="fp32", tile=tile)
    base: dict[str, float] | None = None
    for optimizer, lr in grid:
        pipeline = build_pipeline(loaded, engine=engine, device="cpu", prior=OraclePrior(gt),
                                  detector=lambda _: detections,
                                  requested={"steps": max(snapshots), "lr": lr, "optimizer": optimizer,
                                             "patches_per_face": patches_per_face}, tile=tile)
        outputs, result = pipeline.enhance_snapshots(lq, snapshots)
        if result.adaptation is None or result.faces is None:
            yield {"error": result.reason}
            return
        faces = result.faces
        mask = mask_canvas(faces.regions, gt.shape[:2])
        common = {"faces": sum(f.used for f in faces.faces), "patches": len(faces.patches), "lq_hw": list(lq.shape[:2])}
        if base is None:
            base = region_psnrs(pipeline.upscale(lq, pipeline.base_weights), gt, mask)
            yield {"optimizer": "base", "lr": 0.0, "steps": 0, **common, "psnr": base}
        for steps, rgb in sorted(outputs.items()):
            adapted = region_psnrs(rgb, gt, mask)
            yield {"optimizer": optimizer, "lr": lr, "steps": steps, **common, "psnr": adapted,
                   "psnr_gain": {k: adapted[k] - base[k] for k in adapted},
                   "loss_before_step": result.adaptation.losses[steps - 1],
                   "step_seconds": result.adaptation.step_seconds[steps - 1]}


def render_table(rows: list[dict]) -> str:
    """Markdown: mean PSNR gain (dB) over the measured cases, whole / non-face / face."""
    cells: dict[tuple[str, str, float, int], list[dict]] = {}
    for row in rows:
        if "psnr_gain" in row:
            cells.setdefault((row["degradation"], row["optimizer"], row["lr"], row["steps"]), []).append(row["psnr_gain"])
    lines = ["| degradation | optimizer | α | n | cases | Δ whole dB | Δ non-face dB | Δ face dB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (degradation, optimizer, lr, steps), gains in sorted(cells.items()):
        mean = {k: float(np.mean([g[k] for g in gains])) for k in ("whole", "nonface", "face")}
        lines.append(f"| {degradation} | {optimizer} | {lr:g} | {steps} | {len(gains)} | "
                     f"{mean['whole']:+.3f} | {mean['nonface']:+.3f} | {mean['face']:+.3f} |")
    bases = [r for r in rows if r.get("optimizer") == "base"]
    lines.append("")
    lines += [f"base PSNR {r['photo']} {r['degradation']} (LQ {r['lq_hw'][1]}x{r['lq_hw'][0]}, {r['faces']} face(s), "
              f"{r['patches']} patches): whole {r['psnr']['whole']:.2f}, non-face {r['psnr']['nonface']:.2f}, "
              f"face {r['psnr']['face']:.2f} dB" for r in bases]
    return "\n".join(lines)


@click.group()
def cli() -> None:
    """Measurements behind the adaptation defaults (docs/adaptation.md)."""


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="JSON-lines file, appended to.")
@click.option("--photos", type=click.Path(path_type=Path), multiple=True, help="[../shared/data/photos_hq/*]")
@click.option("--degradation", "degradations", type=click.Choice(DEGRADATIONS), multiple=True)
@click.option("--long-side", type=int, default=128, show_default=True, help="LQ long side, px (CPU time).")
@click.option("--patches-per-face", type=int, default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=0, help="torch threads (0: torch's default).")
@click.option("--max-steps", type=int, default=max(SNAPSHOTS), show_default=True, help="Cut n (CPU time).")
@click.option("--checkpoint", default="realesrgan-x4plus", show_default=True)
def grid(out: Path, photos: tuple[Path, ...], degradations: tuple[str, ...], long_side: int,
         patches_per_face: int, seed: int, threads: int, max_steps: int, checkpoint: str) -> None:
    """Base vs adapted PSNR over optimiser x α x n, oracle prior."""
    if threads:
        torch.set_num_threads(threads)
    loaded = load_supported_network(checkpoint)
    for photo in photos or sorted(PHOTO_DIR.glob("*.jpg")):
        for degradation in degradations or DEGRADATIONS:
            gt, lq = make_pair(photo, degradation, seed, long_side)
            started = time.perf_counter()
            snapshots = tuple(n for n in SNAPSHOTS if n <= max_steps)
            for row in measure_case(loaded, gt, lq, patches_per_face=patches_per_face, grid=GRID,
                                    tile=long_side + 8, snapshots=snapshots):
                row = {"photo": photo.name, "degradation": degradation, "seed": seed,
                       "elapsed_s": round(time.perf_counter() - started, 1), **row}
                with out.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
                click.echo(json.dumps(row))


@cli.command()
@click.argument("results", type=click.Path(exists=True, path_type=Path))
def table(results: Path) -> None:
    """Print the markdown table of a grid run."""
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    click.echo(render_table(rows))


@cli.command()
@click.option("--patches", type=int, default=4, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--checkpoint", default="realesrgan-x4plus", show_default=True)
def precision(patches: int, repeats: int, checkpoint: str) -> None:
    """CPU adaptation step, fp32 vs bf16 autocast: seconds per step (interleaved, median)
    and how far bf16's updated weights and loss are from fp32's."""
    model = load_supported_network(checkpoint).model
    g = torch.Generator().manual_seed(0)
    lq = torch.rand(patches, 3, 16, 16, generator=g)
    target = torch.nn.functional.interpolate(lq, scale_factor=4, mode="bicubic").clamp(0, 1)
    batch = PatchBatch(lq, target, torch.ones(patches, 1, 64, 64))
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    results = {}
    for _ in range(repeats):
        for name in seconds:
            result = adapt(model, batch, AdaptConfig(steps=1, lr=1e-2, optimizer="sgd", precision=name, holdout=0))
            seconds[name].append(result.step_seconds[0])
            results[name] = result
    delta32, delta16 = (parameters_to_vector(results[n].delta.values()) for n in ("fp32", "bf16"))
    relative = float((delta16 - delta32).norm() / delta32.norm())
    cosine = float(torch.nn.functional.cosine_similarity(delta16, delta32, dim=0))
    loss_after = {n: float(masked_l1(model, results[n].weights, lq, target, batch.weight)) for n in results}
    click.echo(json.dumps({
        "patches": patches, "threads": torch.get_num_threads(),
        "median_step_s": {n: float(np.median(s)) for n, s in seconds.items()},
        "update_relative_error_bf16": relative, "update_cosine_bf16": cosine,
        "loss_before": results["fp32"].losses[0], "loss_after": loss_after,
    }))


if __name__ == "__main__":
    cli()
