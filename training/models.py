"""Building θ (RRDBNet), θ_m (MaskNet) and D for meta-training, from weights or fresh."""

from collections.abc import Callable
from pathlib import Path

import torch

from f2n.nets import MaskNet, RRDBNet
from f2n.nets.discriminator import UNetDiscriminatorSN
from f2n.runtime import load_supported_network
from f2n.training.config import TrainConfig
from f2n.weights import load_state_dict_file
from f2n.weights.discriminator import load_discriminator as discriminator_from_state

Log = Callable[[str], None]


def build_sr(config: TrainConfig, log: Log) -> RRDBNet:
    if config.run.sr_weights is None:
        net = config.net
        log(f"θ: random RRDBNet ({net.num_block} blocks, {net.num_feat} features)")
        return RRDBNet(num_feat=net.num_feat, num_block=net.num_block, num_grow_ch=net.num_grow_ch)
    loaded = load_supported_network(str(config.run.sr_weights))  # a file or a registry name; x4 only, as the tasks are
    log(f"θ: {loaded.path} ({loaded.descriptor.num_block} blocks, {loaded.descriptor.num_feat} features)")
    return loaded.model.train().requires_grad_(True)


def build_masknet(config: TrainConfig) -> MaskNet:
    """A MaskNet that starts at m = 1 everywhere (plain L1 in the inner loop): a random one
    outputs near-zero weights, which would make the first inner steps do nothing. The last
    conv's zero weights get gradients at once, so learning is not blocked."""
    masknet = MaskNet(num_feat=config.net.mask_feat, num_layers=config.net.mask_layers)
    last = masknet.body[-2]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(1.0)
    return masknet


def build_disc(config: TrainConfig, log: Log) -> UNetDiscriminatorSN:
    if config.run.disc_weights is None:
        log(f"D: random U-Net discriminator ({config.net.disc_feat} features)")
        return UNetDiscriminatorSN(num_feat=config.net.disc_feat)
    log(f"D: {config.run.disc_weights}")
    return load_discriminator(config.run.disc_weights)


def load_discriminator(path: Path) -> UNetDiscriminatorSN:
    """A U-Net discriminator from a Real-ESRGAN netD file (``params`` unwrapped) or a plain state dict."""
    return discriminator_from_state(load_state_dict_file(path), path).train()
