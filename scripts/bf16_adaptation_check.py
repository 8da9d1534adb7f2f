"""bf16 against fp32 adaptation on the study's tuning photos (issue 27 item 2): may the CPU adapt in
bf16 where it has native bf16? Results feed docs/adaptation.md; re-run with

    python scripts/bf16_adaptation_check.py run --out bf16.jsonl     # 5 photos_tune cases of the tune split
    python scripts/bf16_adaptation_check.py table bf16.jsonl
    python scripts/bf16_adaptation_check.py simulation               # the simulation against torch's bf16

A research script, not part of the installed package. Each case is the study's (``f2n.eval.study``:
iid degradation, seed 0, the realistic ``oracle-restored`` prior, 80 px LQ window) run with the
runtime's default adaptation ("today") in fp32 and in bf16 autocast ("today-bf16"), from the same
pairs and seed; the rows are the study's own.

On a CPU without native bf16 torch emulates bf16 convolutions (one step of x4plus took over 100 s
of CPU here, against 4 s in fp32), so the bf16 run is **simulated**: under CPU bf16 autocast every
conv2d runs as fp32 kernels on its bf16-rounded input, weight and bias, and its output is rounded
to bf16. That is what AVX512-BF16/AMX compute (bf16 x bf16 products are exact in fp32 and summed
in fp32); only the order of the sums differs. Everything else (activations, concatenations,
residual sums, the upsampling) runs in bf16 under torch's own autocast rules, as it would natively.
``simulation`` checks the simulated gradients against torch's real (emulated) bf16 on a small network.
"""

import json
import statistics
from pathlib import Path

import click
import torch
from torch.overrides import TorchFunctionMode

from f2n.cpu_features import native_bf16

PHOTOS = ("couple.png", "img19.png", "img23.png", "img33.png", "img49.png")  # photos_tune ∩ the tune split
SETTINGS = ("today", "today-bf16")


class SimulatedBf16Convs(TorchFunctionMode):
    """Under CPU bf16 autocast, conv2d as native bf16 hardware computes it, with fp32 kernels."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is not torch.conv2d or not torch.is_autocast_enabled("cpu"):
            return func(*args, **kwargs)
        x, weight, *rest = args
        bias = rest.pop(0) if rest else kwargs.pop("bias", None)

        def rounded(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.to(torch.bfloat16).float()

        with torch.autocast("cpu", enabled=False):
            out = func(rounded(x), rounded(weight), rounded(bias), *rest, **kwargs)
        return out.to(torch.bfloat16)


@click.group()
def cli() -> None:
    """fp32 against bf16 adaptation on the study's tuning photos."""


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--photo", "photos", multiple=True, default=PHOTOS, show_default=True)
@click.option("--simulate/--native", default=None, help="[simulate where the CPU has no native bf16]")
def run(out: Path, photos: tuple[str, ...], simulate: bool | None) -> None:
    """Append one row per (case, setting) to OUT."""
    from f2n.eval.study import PHOTO_DIRS, _photos, make_case, run_case
    from f2n.runtime.face.detect import RetinaFaceDetector
    from f2n.weights import load_sr_network

    simulate = not native_bf16() if simulate is None else simulate
    torch.set_num_threads(1)
    model = load_sr_network().model.eval()
    detector = RetinaFaceDetector()
    for photo in _photos(PHOTO_DIRS, photos):
        case = make_case(photo, "iid", 0, lq_size=80, face_lq=32, detector=detector)
        if case is None:
            continue
        for setting in SETTINGS:  # one at a time: only the bf16 one runs under the simulation
            mode = SimulatedBf16Convs() if simulate and setting.endswith("bf16") else None
            if mode is not None:
                mode.__enter__()
            try:
                rows = list(run_case(model, case, [setting], ["oracle-restored"], detector=detector, tile=80))
            finally:
                if mode is not None:
                    mode.__exit__(None, None, None)
            for row in rows:
                row["bf16"] = ("simulated" if simulate else "native") if setting.endswith("bf16") else ""
                with out.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
                click.echo(json.dumps({k: row.get(k) for k in ("photo", "setting", "steps_taken", "adapt_seconds")}))


@cli.command()
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def table(results: Path) -> None:
    """Per case: what fp32 adaptation did, and bf16's difference from it."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    by_case = {}
    for row in rows:
        if "error" not in row:
            by_case.setdefault(row["photo"], {})[row["setting"]] = row
    click.echo("| photo | fp32: Δ non-face PSNR vs base | fp32: Δ NIQE vs base | bf16 − fp32: non-face PSNR (dB) "
               "| bf16 − fp32: NIQE | steps fp32 / bf16 |")
    click.echo("| --- | ---: | ---: | ---: | ---: | ---: |")
    psnr_diffs, niqe_diffs = [], []
    for photo, pair in sorted(by_case.items()):
        if set(pair) != set(SETTINGS):
            continue
        fp32, bf16 = pair["today"], pair["today-bf16"]
        d_psnr = bf16["adapted"]["psnr_nonface"] - fp32["adapted"]["psnr_nonface"]
        d_niqe = bf16["adapted"]["niqe"] - fp32["adapted"]["niqe"]
        psnr_diffs.append(d_psnr)
        niqe_diffs.append(d_niqe)
        click.echo(f"| {photo} | {fp32['delta']['psnr_nonface']:+.3f} | {fp32['delta']['niqe']:+.3f} | {d_psnr:+.4f} "
                   f"| {d_niqe:+.4f} | {fp32['steps_taken']} / {bf16['steps_taken']} |")
    if psnr_diffs:
        click.echo(f"| mean | | | {statistics.mean(psnr_diffs):+.4f} | {statistics.mean(niqe_diffs):+.4f} | |")
        click.echo(f"| largest \\|Δ\\| | | | {max(map(abs, psnr_diffs)):.4f} | {max(map(abs, niqe_diffs)):.4f} | |")


@cli.command()
def simulation() -> None:
    """Bias gradients of one adaptation step on a small RRDBNet: fp32, torch's bf16 autocast (emulated here
    or native) and the simulation. bf16 should move the gradient from fp32's by about as much in both."""
    from f2n.nets import RRDBNet
    from f2n.runtime.adapt import AdaptConfig, iter_adaptation
    from f2n.runtime.types import PatchBatch

    torch.manual_seed(0)
    model = RRDBNet(num_block=2, num_feat=16, num_grow_ch=8).eval()
    generator = torch.Generator().manual_seed(1)
    lq = torch.rand(4, 3, 16, 16, generator=generator)
    batch = PatchBatch(lq, torch.rand(4, 3, 64, 64, generator=generator), torch.ones(4, 1, 64, 64))

    def first_update(precision: str, simulated: bool) -> torch.Tensor:
        config = AdaptConfig(steps=1, precision=precision, optimizer="sgd", lr=1.0, holdout=0, guard=False)
        base = {k: v.detach().clone() for k, v in model.named_parameters() if k.endswith("bias")}
        mode = SimulatedBf16Convs() if simulated else None
        if mode is not None:
            mode.__enter__()
        try:
            step = next(iter_adaptation(model, batch, config))
        finally:
            if mode is not None:
                mode.__exit__(None, None, None)
        return torch.cat([(base[k] - step.weights[k]).flatten() for k in base])  # lr 1: the gradient

    fp32, real, simulated = first_update("fp32", False), first_update("bf16", False), first_update("bf16", True)

    def relative(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    click.echo(f"bias gradient, relative distance to torch's bf16: simulation {relative(simulated, real):.2e}, "
               f"fp32 {relative(fp32, real):.2e}; simulation to fp32 {relative(simulated, fp32):.2e} "
               f"(native bf16 here: {native_bf16()})")


if __name__ == "__main__":
    cli()
