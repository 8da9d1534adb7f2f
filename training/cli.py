"""``f2n-train``: MetaF2N meta-training. Run alone, or with ``torchrun --nproc-per-node N
-m f2n.training.cli ...`` for data parallelism (gloo on CPU, nccl on GPU)."""

import sys
from pathlib import Path

import click
import torch

from f2n.errors import F2NError
from f2n.training.config import (
    DataConfig,
    LossConfig,
    NetConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from f2n.training.trainer import train

_DEFAULT_LOSS, _DEFAULT_OPTIM, _DEFAULT_DATA, _DEFAULT_RUN = LossConfig(), OptimConfig(), DataConfig(), RunConfig()
_DEFAULT_NET = NetConfig()
_DIR = click.Path(path_type=Path, file_okay=False)
_FILE = click.Path(path_type=Path, dir_okay=False)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--faces", "faces_dir", type=_DIR, required=True, help="Folder of HQ aligned face images.")
@click.option("--natural", "natural_dir", type=_DIR, required=True, help="Folder of HQ natural images.")
@click.option("--out", "out_dir", type=_DIR, default=_DEFAULT_RUN.out_dir, help="Run folder: checkpoints/, log.jsonl.")
@click.option("--steps", type=click.IntRange(1), default=_DEFAULT_RUN.steps, help="Total meta steps (resumed runs count on).")
@click.option("--tasks-per-step", type=click.IntRange(1), default=_DEFAULT_DATA.tasks_per_step, help="Tasks per step and worker.")
@click.option("--inner-patch", type=int, default=_DEFAULT_DATA.inner_patch, help="HQ face patch side (inner loop).")
@click.option("--outer-patch", type=int, default=_DEFAULT_DATA.outer_patch, help="HQ natural crop side (outer loop).")
@click.option("--face-size", type=int, default=_DEFAULT_DATA.face_size, help="Aligned faces are resized to this.")
@click.option("--ood", is_flag=True, help="Out-of-distribution degradations (motion blur, speckle).")
@click.option("--face-targets", type=click.Choice(["auto", "prior", "gt"]), default=_DEFAULT_DATA.face_targets,
              help="Inner-loop targets: GPEN restorations or GT faces; auto takes the prior when its weights are cached.")
@click.option("--sr-weights", type=_FILE, default=None,
              help="Start θ from these weights: a file or a registry name (realesrgan-x4plus).")
@click.option("--disc-weights", type=_FILE, default=None, help="Start D from these weights (RealESRGAN_x4plus_netD.pth).")
@click.option("--resume", type=click.Path(path_type=Path), default=None, help="Training checkpoint or run folder to resume.")
@click.option("--num-block", type=click.IntRange(1), default=_DEFAULT_NET.num_block, help="RRDB blocks (random θ only).")
@click.option("--num-feat", type=click.IntRange(1), default=_DEFAULT_NET.num_feat, help="RRDBNet features (random θ only).")
@click.option("--num-grow-ch", type=click.IntRange(1), default=_DEFAULT_NET.num_grow_ch, help="RRDBNet growth channels.")
@click.option("--mask-feat", type=click.IntRange(1), default=_DEFAULT_NET.mask_feat, help="MaskNet features.")
@click.option("--mask-layers", type=click.IntRange(2), default=_DEFAULT_NET.mask_layers, help="MaskNet conv layers.")
@click.option("--disc-feat", type=click.IntRange(1), default=_DEFAULT_NET.disc_feat, help="Discriminator features (random D only).")
@click.option("--lambda-l1", type=float, default=_DEFAULT_LOSS.l1)
@click.option("--lambda-lpips", type=float, default=_DEFAULT_LOSS.lpips, help="Needs the AlexNet weights (f2n-models).")
@click.option("--no-lpips", is_flag=True, help="Train without LPIPS (same as --lambda-lpips 0).")
@click.option("--lambda-gan", type=float, default=_DEFAULT_LOSS.gan)
@click.option("--lambda-mask", type=float, default=_DEFAULT_LOSS.mask_reg, help="Weight of ‖m − 1‖₂.")
@click.option("--lambda-ss", type=float, default=_DEFAULT_LOSS.self_similarity, help="Weight of the self-similarity loss.")
@click.option("--alpha", type=float, default=_DEFAULT_OPTIM.alpha, help="Inner-loop step size.")
@click.option("--first-order", is_flag=True, help="First-order MAML (no second-order terms).")
@click.option("--lr-sr", type=float, default=_DEFAULT_OPTIM.lr_sr)
@click.option("--lr-mask", type=float, default=_DEFAULT_OPTIM.lr_mask)
@click.option("--lr-disc", type=float, default=_DEFAULT_OPTIM.lr_disc)
@click.option("--ema", "ema_decay", type=float, default=_DEFAULT_OPTIM.ema_decay, help="EMA decay of θ (0: off).")
@click.option("--seed", type=int, default=_DEFAULT_RUN.seed)
@click.option("--checkpoint-every", type=click.IntRange(1), default=_DEFAULT_RUN.checkpoint_every)
@click.option("--log-every", type=click.IntRange(1), default=_DEFAULT_RUN.log_every)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--threads", type=click.IntRange(0), default=0, help="CPU threads for torch (0: torch's default).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def main(**options: object) -> None:
    """Meta-train θ (RRDBNet), θ_m (MaskNet) and D as in MetaF2N Alg. 1."""
    try:
        config = _config(options)
        if options["threads"]:
            torch.set_num_threads(int(options["threads"]))
        last = train(config, log=lambda line: click.echo(line, err=True), progress=not options["no_progress"],
                     device=str(options["device"]))
    except F2NError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    if last is not None:  # only the main worker reports
        click.echo(str(last))


def _config(o: dict) -> TrainConfig:
    return TrainConfig(
        net=NetConfig(o["num_block"], o["num_feat"], o["num_grow_ch"], o["mask_feat"], o["mask_layers"], o["disc_feat"]),
        loss=LossConfig(l1=o["lambda_l1"], lpips=0.0 if o["no_lpips"] else o["lambda_lpips"], gan=o["lambda_gan"],
                        mask_reg=o["lambda_mask"], self_similarity=o["lambda_ss"]),
        optim=OptimConfig(lr_sr=o["lr_sr"], lr_mask=o["lr_mask"], lr_disc=o["lr_disc"], alpha=o["alpha"],
                          first_order=o["first_order"], ema_decay=o["ema_decay"]),
        data=DataConfig(faces_dir=o["faces_dir"], natural_dir=o["natural_dir"], tasks_per_step=o["tasks_per_step"],
                        inner_patch=o["inner_patch"], outer_patch=o["outer_patch"], face_size=o["face_size"],
                        ood=o["ood"], face_targets=o["face_targets"]),
        run=RunConfig(out_dir=o["out_dir"], steps=o["steps"], seed=o["seed"], checkpoint_every=o["checkpoint_every"],
                      log_every=o["log_every"], sr_weights=o["sr_weights"], disc_weights=o["disc_weights"],
                      resume=o["resume"]),
    )


if __name__ == "__main__":
    main()
