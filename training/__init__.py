"""MetaF2N meta-training (Alg. 1): θ (RRDBNet), θ_m (MaskNet) and a U-Net discriminator,
trained so that one inner step on a photo's faces improves the whole photo.
Entry point: ``f2n-train`` (:mod:`f2n.training.cli`); import what is listed in ``__all__``."""

from f2n.training.checkpoint import TrainState, latest_checkpoint, load_checkpoint
from f2n.training.config import (
    DataConfig,
    LossConfig,
    NetConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from f2n.training.losses import self_similarity_loss
from f2n.training.maml import (
    MetaModules,
    MetaOptimizers,
    TaskBatch,
    inner_adapt,
    meta_gradients,
    meta_objective,
    train_step,
)
from f2n.training.trainer import train

__all__ = [
    "DataConfig",
    "LossConfig",
    "MetaModules",
    "MetaOptimizers",
    "NetConfig",
    "OptimConfig",
    "RunConfig",
    "TaskBatch",
    "TrainConfig",
    "TrainState",
    "inner_adapt",
    "latest_checkpoint",
    "load_checkpoint",
    "meta_gradients",
    "meta_objective",
    "self_similarity_loss",
    "train",
    "train_step",
]
