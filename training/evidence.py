"""Does meta-training help adaptation? A small CPU experiment for docs/training.md.

From one common starting point (a small RRDBNet briefly pre-trained with plain L1), two
branches get the same number of steps on the same tasks:

* meta: MetaF2N's step (inner step on the face, L1 on the natural image after it);
* plain: ordinary fine-tuning, L1 on the face and on the natural image, no inner step.

Each is then scored as it would be deployed, on held-out tasks from held-out images: one
inner step of size α on the task's face (MaskNet weights for meta, ones for plain), then
L1 on the task's natural image. Run: ``python -m f2n.training.evidence DATA_DIR OUT_DIR [SEED]``.
"""

import copy
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from f2n.fileio import write_text_atomic
from f2n.nets import RRDBNet
from f2n.training.config import DataConfig, LossConfig, OptimConfig, TrainConfig
from f2n.training.data import list_images
from f2n.training.maml import (
    MetaModules,
    MetaOptimizers,
    TaskBatch,
    face_weight,
    inner_adapt,
    train_step,
)
from f2n.training.models import build_masknet
from f2n.training.tasks import TaskSampler


@dataclass(frozen=True)
class Experiment:
    held_out: int = 2  # last N faces and natural images are never trained on
    pretrain_steps: int = 150
    branch_steps: int = 150
    eval_tasks: int = 16
    alpha: float = 0.05
    lr_pretrain: float = 1e-3
    lr_branch: float = 2e-4
    lr_mask: float = 1e-3
    net: tuple[int, int, int] = (2, 16, 8)  # num_block, num_feat, num_grow_ch
    data: DataConfig = DataConfig(tasks_per_step=4, inner_patch=64, outer_patch=64, face_size=128, face_targets="gt")
    seed: int = 0


def plain_step(sr: nn.Module, optimizer: torch.optim.Optimizer, tasks: TaskBatch) -> float:
    """Ordinary fine-tuning on the same data as a meta step: L1 on faces and natural images."""
    loss = (F.l1_loss(sr(tasks.face_lq), tasks.face_target) + F.l1_loss(sr(tasks.natural_lq), tasks.natural_hq)) / 2
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def held_out_l1(sr: nn.Module, masknet: nn.Module | None, tasks: TaskBatch, alpha: float) -> dict[str, float]:
    """Mean natural-image L1 before and after one inner step on each task's face."""
    params = {n: p.detach().requires_grad_(True) for n, p in sr.named_parameters()}
    before, after = [], []
    for t in range(len(tasks)):
        one = tasks.select(slice(t, t + 1))
        with torch.no_grad():
            before.append(float(F.l1_loss(sr(one.natural_lq), one.natural_hq)))
            weight = (face_weight(masknet, dict(masknet.named_parameters()), one.face_lq, one.face_target)
                      if masknet is not None else torch.ones_like(one.face_target[:, :1]))
        adapted = inner_adapt(sr, params, one.face_lq, one.face_target, weight, alpha, create_graph=False)
        with torch.no_grad():
            after.append(float(F.l1_loss(torch.func.functional_call(sr, adapted, (one.natural_lq,)), one.natural_hq)))
    return {"before": sum(before) / len(before), "after": sum(after) / len(after)}


def run(data_dir: Path, out_dir: Path, exp: Experiment = Experiment()) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    faces, naturals = list_images(data_dir / "faces_hq", "faces"), list_images(data_dir / "natural_hq", "natural-image")
    n = exp.held_out
    train_tasks = TaskSampler(faces[:-n], naturals[:-n], exp.data, exp.seed)
    eval_tasks = TaskSampler(faces[-n:], naturals[-n:], exp.data, exp.seed + 1).batch(0, 0, exp.eval_tasks)
    per_step = exp.data.tasks_per_step
    torch.manual_seed(exp.seed)
    num_block, num_feat, num_grow_ch = exp.net
    start = RRDBNet(num_block=num_block, num_feat=num_feat, num_grow_ch=num_grow_ch)
    results: dict = {"experiment": repr(exp), "log": []}

    began = time.perf_counter()
    optimizer = torch.optim.Adam(start.parameters(), lr=exp.lr_pretrain)
    for step in range(exp.pretrain_steps):  # steps 0..P-1 of the task stream
        plain_step(start, optimizer, train_tasks.batch(step, 0, per_step))
    results["start"] = held_out_l1(start, None, eval_tasks, exp.alpha)
    results["seconds_pretrain"] = time.perf_counter() - began
    _report(out_dir, results)

    plain = copy.deepcopy(start)
    optimizer = torch.optim.Adam(plain.parameters(), lr=exp.lr_branch)
    began = time.perf_counter()
    for step in range(exp.pretrain_steps, exp.pretrain_steps + exp.branch_steps):
        plain_step(plain, optimizer, train_tasks.batch(step, 0, per_step))
    results["plain"] = held_out_l1(plain, None, eval_tasks, exp.alpha)
    results["seconds_plain"] = time.perf_counter() - began
    _report(out_dir, results)

    sr = copy.deepcopy(start)
    config = TrainConfig(data=exp.data)
    masknet = build_masknet(config)
    modules = MetaModules(sr, masknet)
    optimizers = MetaOptimizers(torch.optim.Adam(sr.parameters(), lr=exp.lr_branch, betas=config.optim.betas),
                                torch.optim.Adam(masknet.parameters(), lr=exp.lr_mask, betas=config.optim.betas))
    losses = LossConfig(l1=1.0, lpips=0.0, gan=0.0, mask_reg=0.002)
    optim = OptimConfig(alpha=exp.alpha)
    began = time.perf_counter()
    for step in range(exp.pretrain_steps, exp.pretrain_steps + exp.branch_steps):
        logs = train_step(modules, optimizers, train_tasks.batch(step, 0, per_step), losses, optim, lambda _: None)
        if step % 25 == 0:
            results["log"].append({"step": step, **logs})
    results["meta"] = held_out_l1(sr, masknet, eval_tasks, exp.alpha)
    results["meta_ones_mask"] = held_out_l1(sr, None, eval_tasks, exp.alpha)
    results["seconds_meta"] = time.perf_counter() - began
    _report(out_dir, results)
    return results


def _report(out_dir: Path, results: dict) -> None:
    write_text_atomic(out_dir / "evidence.json", json.dumps(results, indent=2))


if __name__ == "__main__":
    torch.set_num_threads(1)
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else Experiment.seed
    print(json.dumps(run(Path(sys.argv[1]), Path(sys.argv[2]), Experiment(seed=seed)), indent=2))
