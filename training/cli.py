"""``f2n-train``: MetaF2N meta-training (``--method metaf2n``, the default), CMDSR
ConditionNet training (``--method cmdsr``, natural images only) or the MMRB face restorer
(``--method mmrb``, aligned HQ faces only) or ReDegNet with F2N-ESRGAN (``--method redegnet``).
MetaF2N, MMRB and ReDegNet run alone or with ``torchrun --nproc-per-node N -m f2n.training.cli ...``
for data parallelism (gloo on CPU, nccl on GPU); CMDSR runs in one process."""

from pathlib import Path

import click
import torch

from f2n.command import Command
from f2n.errors import ConfigError
from f2n.training.cmdsr import train_cmdsr
from f2n.training.config import (
    CmdsrConfig,
    DataConfig,
    LossConfig,
    NetConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from f2n.training.mmrb import MmrbConfig, MmrbLosses, train_mmrb
from f2n.training.redegnet import ReDegTrainConfig, train_redegnet
from f2n.training.redegnet_step import ReDegLosses, SRLosses
from f2n.training.trainer import train

_DEFAULT_LOSS, _DEFAULT_OPTIM, _DEFAULT_DATA, _DEFAULT_RUN = LossConfig(), OptimConfig(), DataConfig(), RunConfig()
_DEFAULT_NET, _DEFAULT_CMDSR = NetConfig(), CmdsrConfig()
_DIR = click.Path(path_type=Path, file_okay=False)
_FILE = click.Path(path_type=Path, dir_okay=False)


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--method", type=click.Choice(["metaf2n", "cmdsr", "mmrb", "redegnet"]), default=_DEFAULT_RUN.method,
              help="metaf2n: θ, MaskNet, D from faces; cmdsr: a ConditionNet from natural images only; "
                   "mmrb: the MMRB face restorer from aligned HQ faces; redegnet: DegNet and SynNet from real "
                   "face pairs and natural images.")
@click.option("--face-pairs", "face_pairs_dir", type=_DIR, default=None,
              help="redegnet: folder with lq/ and pseudo_hq/ aligned faces of the same names.")
@click.option("--redegnet-size", type=int, default=256, help="redegnet: crop size of random networks.")
@click.option("--redegnet-narrow", type=float, default=1.0, help="redegnet: width of random networks (x the released).")
@click.option("--redegnet-init", is_flag=True, help="redegnet: start from the released files in the weight cache.")
@click.option("--no-perceptual", is_flag=True, help="redegnet: train without the VGG perceptual and style terms.")
@click.option("--redegnet-sr/--no-redegnet-sr", default=True,
              help="redegnet: also train F2N-ESRGAN (θ, an RRDBNet on [-1, 1] images, and its U-Net D) on SynNet's "
                   "renderings, as the official step does.")
@click.option("--faces", "faces_dir", type=_DIR, default=None, help="Folder of HQ aligned face images (metaf2n, mmrb).")
@click.option("--natural", "natural_dir", type=_DIR, default=None, help="Folder of HQ natural images (metaf2n, cmdsr, redegnet).")
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
              help="Start θ from these weights: a file or a registry name (realesrgan-x4plus); redegnet: a signed-range θ "
                   "(the official net_f2n_init.pth / F2N-ESRGAN).")
@click.option("--disc-weights", type=_FILE, default=None,
              help="Start D from these weights: RealESRGAN_x4plus_netD.pth (metaf2n; redegnet: θ's D), GPEN-BFR-512-D.pth (mmrb).")
@click.option("--gpen-weights", type=_FILE, default=None, help="mmrb: initialise the restorer from GPEN-BFR-512.pth.")
@click.option("--vgg-weights", type=_FILE, default=None,
              help="mmrb, redegnet: VGG-19 for feature matching / perceptual loss [registry vgg19].")
@click.option("--arcface-weights", type=_FILE, default=None,
              help="mmrb: ArcFace IR-SE50 for the identity loss [registry arcface-ir-se50].")
@click.option("--no-feature-matching", is_flag=True, help="mmrb: train without the VGG feature-matching loss.")
@click.option("--no-identity", is_flag=True, help="mmrb: train without the ArcFace identity loss.")
@click.option("--batch-size", type=click.IntRange(1), default=4, help="mmrb, redegnet: samples per step and worker.")
@click.option("--decoder-blocks", type=click.IntRange(0), default=1, help="mmrb: MMRBs per decoder scale (encoder: +1).")
@click.option("--mmrb-narrow", type=float, default=1.0, help="mmrb: width of a random restorer (no --gpen-weights).")
@click.option("--local-size", type=click.IntRange(8), default=64, help="mmrb: side of the eye/mouth crops.")
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
@click.option("--support-patch", type=int, default=_DEFAULT_CMDSR.support_patch, help="cmdsr: support patch side, LR px.")
@click.option("--support-count", type=int, default=_DEFAULT_CMDSR.support_count, help="cmdsr: support patches per task.")
@click.option("--query-patch", type=int, default=_DEFAULT_CMDSR.query_patch, help="cmdsr: query patch side, LR px.")
@click.option("--query-count", type=int, default=_DEFAULT_CMDSR.query_count, help="cmdsr: query patches per task.")
@click.option("--cond-feat", type=click.IntRange(1), default=_DEFAULT_CMDSR.cond_feat, help="cmdsr: ConditionNet features.")
@click.option("--cond-layers", type=click.IntRange(1), default=_DEFAULT_CMDSR.cond_layers, help="cmdsr: ConditionNet conv layers.")
@click.option("--modulate", multiple=True, default=_DEFAULT_CMDSR.modulate,
              help="cmdsr: RRDBNet conv-name prefix to modulate (repeatable; default the RRDB trunk).")
@click.option("--lr-cond", type=float, default=_DEFAULT_CMDSR.lr_cond, help="cmdsr: ConditionNet learning rate.")
@click.option("--train-sr", is_flag=True, help="cmdsr: also train θ (at --lr-sr); θ is frozen otherwise.")
@click.option("--val-images", type=click.IntRange(0), default=_DEFAULT_CMDSR.val_images,
              help="cmdsr: natural images held out for the query-L1 check at each checkpoint.")
@click.option("--val-tasks", type=click.IntRange(1), default=_DEFAULT_CMDSR.val_tasks, help="cmdsr: held-out tasks.")
@click.option("--seed", type=int, default=_DEFAULT_RUN.seed)
@click.option("--checkpoint-every", type=click.IntRange(1), default=_DEFAULT_RUN.checkpoint_every)
@click.option("--log-every", type=click.IntRange(1), default=_DEFAULT_RUN.log_every)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--threads", type=click.IntRange(0), default=0, help="CPU threads for torch (0: torch's default).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def main(**options: object) -> None:
    """Meta-train θ (RRDBNet), θ_m (MaskNet) and D as in MetaF2N Alg. 1; or train a CMDSR ConditionNet, the MMRB
    restorer, or ReDegNet with F2N-ESRGAN."""
    if options["threads"]:
        torch.set_num_threads(int(options["threads"]))
    if options["method"] == "mmrb":
        config, run = _mmrb_config(options), train_mmrb
    elif options["method"] == "redegnet":
        config, run = _redegnet_config(options), train_redegnet
    else:
        if options["natural_dir"] is None:
            raise ConfigError(f"--method {options['method']} needs --natural, a folder of HQ natural images")
        config = _config(options)
        run = train_cmdsr if config.run.method == "cmdsr" else train
    last = run(config, log=lambda line: click.echo(line, err=True), progress=not options["no_progress"],
               device=str(options["device"]))
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
        cmdsr=CmdsrConfig(support_patch=o["support_patch"], support_count=o["support_count"],
                          query_patch=o["query_patch"], query_count=o["query_count"], cond_feat=o["cond_feat"],
                          cond_layers=o["cond_layers"], modulate=tuple(o["modulate"]), lr_cond=o["lr_cond"],
                          train_sr=o["train_sr"], val_images=o["val_images"], val_tasks=o["val_tasks"]),
        run=RunConfig(method=o["method"], out_dir=o["out_dir"], steps=o["steps"], seed=o["seed"], checkpoint_every=o["checkpoint_every"],
                      log_every=o["log_every"], sr_weights=o["sr_weights"], disc_weights=o["disc_weights"],
                      resume=o["resume"]),
    )


def _mmrb_config(o: dict) -> MmrbConfig:
    if o["faces_dir"] is None:
        raise ConfigError("--method mmrb needs --faces, a folder of HQ aligned face images")
    return MmrbConfig(
        faces_dir=o["faces_dir"], out_dir=o["out_dir"], steps=o["steps"], gpen_weights=o["gpen_weights"],
        disc_weights=o["disc_weights"], vgg_weights=o["vgg_weights"], arcface_weights=o["arcface_weights"],
        batch_size=o["batch_size"], size=o["face_size"], narrow=o["mmrb_narrow"], decoder_blocks=o["decoder_blocks"],
        local_size=o["local_size"], ood=o["ood"], seed=o["seed"], checkpoint_every=o["checkpoint_every"],
        log_every=o["log_every"], resume=o["resume"],
        losses=MmrbLosses(feature_matching=0.0 if o["no_feature_matching"] else MmrbLosses.feature_matching,
                          identity=0.0 if o["no_identity"] else MmrbLosses.identity),
    )


def _redegnet_config(o: dict) -> ReDegTrainConfig:
    if o["face_pairs_dir"] is None or o["natural_dir"] is None:
        raise ConfigError("--method redegnet needs --face-pairs (lq/ and pseudo_hq/) and --natural, folders of images")
    return ReDegTrainConfig(
        face_pairs_dir=o["face_pairs_dir"], natural_dir=o["natural_dir"], out_dir=o["out_dir"], steps=o["steps"],
        batch_size=o["batch_size"], size=o["redegnet_size"], narrow=o["redegnet_narrow"],
        init_released=o["redegnet_init"], train_sr=o["redegnet_sr"], sr_weights=o["sr_weights"],
        sr_disc_weights=o["disc_weights"], num_block=o["num_block"], num_feat=o["num_feat"],
        num_grow_ch=o["num_grow_ch"], disc_feat=o["disc_feat"], vgg_weights=o["vgg_weights"], seed=o["seed"],
        checkpoint_every=o["checkpoint_every"], log_every=o["log_every"], resume=o["resume"],
        losses=ReDegLosses(perceptual=0.0) if o["no_perceptual"] else ReDegLosses(),
        sr_losses=SRLosses(perceptual=0.0) if o["no_perceptual"] else SRLosses(),
    )


if __name__ == "__main__":
    main()
