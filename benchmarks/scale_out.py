"""Throughput of f2n-batch with 1 and 2 CPU workers against f2n-adapt-and-run's loop, on the
same photos, in one process (docs/scale-out.md). Run::

    OMP_NUM_THREADS=1 python -m f2n.benchmarks.scale_out --photos ../shared/data/photos_tune

The photos are resized to ``--side`` px (long side) and written to a temp folder; every
configuration processes all of them with the same options (real Real-ESRGAN x4plus by
default, the identity prior ``numpy:copy`` so that no face-prior weights are needed).
Steady state: seconds per photo after each worker's first (warm-up) photo. Per-photo
overhead of Ray: with one worker, the steady time between results minus the pipeline's own
time per photo (``timings.total``).
"""

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from f2n.runtime.batch import ClusterOptions, Manifest, PipelineOptions, pipeline_from_options, plan_photos, run_batch
from f2n.runtime.images import image_files, read_image, write_image


def write_photos(source: Path, folder: Path, side: int, copies: int) -> None:
    for copy in range(copies):
        for index, path in enumerate(image_files(source)):
            rgb = read_image(path).rgb
            scale = side / max(rgb.shape[:2])
            small = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)),
                               interpolation=cv2.INTER_AREA)
            write_image(folder / f"p{copy}_{index}.png", np.clip(small if copy % 2 == 0 else small[:, ::-1], 0, 1))


def single_process(folder: Path, out: Path, options: PipelineOptions) -> dict:
    """f2n-adapt-and-run's way: one pipeline, photos one after the other."""
    out.mkdir()
    start = time.perf_counter()
    pipeline = pipeline_from_options(options)
    built = time.perf_counter()
    totals = []
    for photo in plan_photos((str(folder),), out):
        totals.append(pipeline(Path(photo.source), Path(photo.output), seed=photo.seed).timings["total"])
    wall = time.perf_counter() - start
    return {"photos": len(totals), "wall_s": wall, "startup_s": built - start, "pipeline_s": totals,
            "photos_per_s": len(totals) / wall, "steady_s_per_photo": statistics.mean(totals[1:])}  # after warm-up


def on_ray(folder: Path, out: Path, options: PipelineOptions, workers: int) -> dict:
    arrivals: list[float] = []
    start = time.perf_counter()

    def echo(text: str) -> None:
        if text.startswith("["):
            arrivals.append(time.perf_counter() - start)

    photos = plan_photos((str(folder),), out)
    with Manifest(out / "manifest.jsonl", options.digest()) as manifest:
        run_batch(photos, manifest, options, ClusterOptions(workers=workers), attempts_dir=out / ".attempts",
                  echo=echo)
        totals = [line["timings"]["total"] for line in manifest.latest.values()]  # in the order they finished
    wall = time.perf_counter() - start
    steady = (arrivals[-1] - arrivals[workers - 1]) / (len(arrivals) - workers)  # after each worker's first photo
    return {"photos": len(totals), "workers": workers, "wall_s": wall, "first_result_s": arrivals[0],
            "pipeline_s": totals, "photos_per_s": len(totals) / wall, "steady_s_per_photo": steady}


@click.command()
@click.option("--photos", "source", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--side", default=128, show_default=True, help="Long side of the photos, px.")
@click.option("--copies", default=2, show_default=True, help="Mirrored copies of the folder (more photos).")
@click.option("--checkpoint", default="realesrgan-x4plus", show_default=True)
@click.option("--steps", default=2, show_default=True)
@click.option("--out", "result_path", type=click.Path(path_type=Path), help="Also write the figures as JSON.")
def main(source: Path, side: int, copies: int, checkpoint: str, steps: int, result_path: Path | None) -> None:
    import ray

    torch.set_num_threads(1)
    options = PipelineOptions(checkpoint=checkpoint, prior="numpy:copy", steps=steps, device="cpu")
    results = {"load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / "in"
        folder.mkdir()
        write_photos(source, folder, side, copies)
        results["single"] = single_process(folder, Path(temp) / "single", options)
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        results["ray_init_s"] = time.perf_counter() - started
        for workers in (1, 2):
            results[f"ray_{workers}"] = on_ray(folder, Path(temp) / f"ray{workers}", options, workers)
        ray.shutdown()
    results["load_average_at_end"] = os.getloadavg()
    one = results["ray_1"]
    results["ray_overhead_s_per_photo"] = one["steady_s_per_photo"] - statistics.mean(one["pipeline_s"][1:])
    click.echo(json.dumps(results, indent=1))
    if result_path is not None:
        result_path.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
