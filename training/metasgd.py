"""Meta-SGD at CPU scale over a frozen SR network (issue 28, third round).

θ (stock x4plus) stays fixed. What is learnt is what the stock network lacks for test-time
adaptation: a step size per element of the adapted subset (the biases, as the runtime adapts) and
the MaskNet that weighs the face pairs. Each task is MetaF2N's (``f2n.training.tasks``): one
degradation applied to a face patch (inner loop) and to a natural crop (outer loop). The inner
loop is one SGD step b′ = b − α ⊙ ∇_b mean(m · |f(LQ_face; θ, b) − target|) toward the face as the
realistic prior restores it (θ on the clean ×4 downscale, as ``oracle-restored`` does); the outer
loss on the natural crop is L1 + the high-band sliced Wasserstein texture term, through
``f2n.training.maml.meta_objective``. α = exp(log α) stays positive. The meta-gradient is exact
(``meta_gradients``): the MaskNet reaches the outer loss only through ∇_b of the inner loss.

    python -m f2n.training.metasgd --faces ../shared/data/faces_hq --natural ../shared/data/natural_hq \
        --out runs/metasgd --steps 300
"""

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, jvp

from f2n.command import Command
from f2n.errors import ConfigError
from f2n.runtime import SCALE, load_supported_network
from f2n.runtime.adapt import DEFAULT_LR
from f2n.runtime.adapt_params import make_param_space
from f2n.texture_loss import PATCH, random_directions, texture_distance
from f2n.training.checkpoint import append_log
from f2n.training.config import DataConfig, LossConfig, NetConfig, TrainConfig
from f2n.training.data import list_images, load_rgb, random_crop
from f2n.training.degradations import sample_params
from f2n.training.maml import MetaModules, OuterResult, TaskBatch, face_weight, inner_adapt, meta_objective
from f2n.training.models import build_masknet
from f2n.training.tasks import TaskSampler, _to_size, make_task
from f2n.weights.metasgd import save_metasgd

Log = Callable[[str], None]
INIT_STEP = 2 ** 31 - 1  # the task stream index of the tasks α is initialised on


@dataclass(frozen=True)
class MetaSgdConfig:
    faces_dir: Path
    natural_dir: Path
    out_dir: Path
    sr_weights: str = "realesrgan-x4plus"  # a file or a registry name
    steps: int = 300
    tasks_per_step: int = 2  # half iid, half ood degradations (the check has both)
    inner_patch: int = 64  # HQ px: 16-px LQ face patches, the runtime's
    outer_patch: int = 128  # HQ px: 32-px LQ natural crops
    face_size: int = 128  # faces of ~32 LQ px, as the study's (--face-lq 24-32)
    init_step: float = DEFAULT_LR  # α starts where one SGD step moves a bias as far as one of today's Adam steps
    init_tasks: int = 8
    lr_alpha: float = 5e-2  # Adam on log α: a few dozen steps can move α by ×10
    lr_mask: float = 1e-3
    texture: float = 1.0  # weight of the texture term in the outer loss (L1's is 1)
    mask_reg: float = 0.002  # MetaF2N's ‖m − 1‖ weight
    mask_feat: int = 32
    per_element: bool = False  # one α per bias element; default one per bias tensor (the data is small)
    seed: int = 0
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        if self.steps < 1 or self.tasks_per_step < 2 or self.init_tasks < 1:
            raise ConfigError(f"steps and init_tasks must be >= 1 and tasks_per_step >= 2 (iid and ood), got "
                              f"{self.steps}, {self.init_tasks}, {self.tasks_per_step}")
        if not (self.init_step > 0 and self.lr_alpha > 0 and self.lr_mask >= 0 and self.texture >= 0):
            raise ConfigError("init_step and lr_alpha must be > 0, lr_mask and texture >= 0")

    @property
    def losses(self) -> LossConfig:
        return LossConfig(l1=1.0, lpips=0.0, gan=0.0, mask_reg=self.mask_reg, texture=self.texture)

    def data(self, ood: bool) -> DataConfig:
        return DataConfig(faces_dir=self.faces_dir, natural_dir=self.natural_dir, tasks_per_step=self.tasks_per_step,
                          inner_patch=self.inner_patch, outer_patch=self.outer_patch, face_size=self.face_size,
                          ood=ood, face_targets="gt")


def oracle_restored(sr: torch.nn.Module, face_hq: torch.Tensor) -> torch.Tensor:
    """The realistic prior on a whole HQ face (3, S, S): θ on its clean bicubic ×4 downscale, as
    ``oracle-restored`` restores a photo's faces (whole, so patch borders carry no padding artefacts)."""
    clean = F.interpolate(face_hq[None], scale_factor=1 / SCALE, mode="bicubic", antialias=True).clamp(0, 1)
    with torch.no_grad():
        return sr(clean).clamp(0, 1)


def sample_task(sampler: TaskSampler, sr: torch.nn.Module, step: int, index: int) -> TaskBatch:
    """``TaskSampler.task`` with the face target restored by the realistic prior (``oracle_restored``)
    instead of the GT face, so that the MaskNet learns where that prior is worth following."""
    rng = np.random.default_rng([sampler.seed, step, index])
    face = _to_size(load_rgb(sampler.faces[rng.integers(len(sampler.faces))], SCALE * 4), sampler.data.face_size)
    natural = load_rgb(sampler.naturals[rng.integers(len(sampler.naturals))], sampler.data.outer_patch)
    natural_crop, _, _ = random_crop(natural, sampler.data.outer_patch, rng)
    params = sample_params(rng, ood=sampler.data.ood)
    restored = oracle_restored(sr, face)
    return make_task(face, natural_crop, params, sampler.data.inner_patch, rng, lambda _lq: restored)


def sample_tasks(samplers: tuple[TaskSampler, TaskSampler], sr: torch.nn.Module, step: int, count: int) -> TaskBatch:
    """``count`` tasks of ``step``, the first half iid, the rest ood."""
    tasks = [sample_task(samplers[index >= count // 2], sr, step, index) for index in range(count)]
    return TaskBatch(*(torch.cat(t) for t in zip(*((p.face_lq, p.face_target, p.natural_lq, p.natural_hq)
                                                     for p in tasks))))


def adapted_subset(sr: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The biases as the inner loop's leaves (the runtime's default subset, ``make_param_space``)."""
    return {k: v.requires_grad_() for k, v in make_param_space(dict(sr.named_parameters()), "bias").trainable.items()}


def initial_log_alpha(sr: torch.nn.Module, tasks: TaskBatch, init_step: float,
                      per_element: bool = False) -> dict[str, torch.Tensor]:
    """log α, one value per tensor (a 0-d tensor: α_t = ``init_step`` / mean |∂L_in/∂b_t|) or per
    element (α_i = ``init_step`` / mean |∂L_in/∂b_i|), means over ``tasks`` (m = 1): one SGD step then
    moves a bias about as far as one Adam step of ``init_step`` does (per element: each of them)."""
    biases = adapted_subset(sr)
    total = {k: torch.zeros_like(b) for k, b in biases.items()}
    for t in range(len(tasks)):
        one = tasks.select(slice(t, t + 1))
        adapted = inner_adapt(sr, biases, one.face_lq, one.face_target, torch.ones_like(one.face_target[:, :1]),
                              1.0, create_graph=False)
        for k, b in biases.items():  # b − 1·g = adapted: g = b − adapted
            total[k] += (b - adapted[k]).detach().abs() / len(tasks)
    if per_element:  # Adam's first step moves every element by its lr: so does this one, on average over tasks
        return {k: (init_step / v.clamp(min=1e-12)).log() for k, v in total.items()}
    return {k: torch.tensor(float(np.log(init_step / max(float(v.mean()), 1e-12)))) for k, v in total.items()}


def step_sizes(log_alpha: Mapping[str, torch.Tensor], like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """α = exp(log α) at the shapes of the tensors it scales (a per-tensor α broadcast)."""
    return {k: v.exp().expand_as(like[k]) for k, v in log_alpha.items()}


def meta_gradients(sr: torch.nn.Module, masknet: torch.nn.Module, log_alpha: Mapping[str, torch.Tensor],
                   tasks: TaskBatch, losses: LossConfig) -> tuple[OuterResult, list[torch.Tensor], list[torch.Tensor]]:
    """The outer loss and its exact gradients w.r.t. log α and the MaskNet, without a second backward.

    With θ frozen and one inner step b′ = b − α ⊙ g(m), the inner gradient g is needed only as a
    value for ∂L/∂α = −g ⊙ ∂L/∂b′ (``meta_objective`` with ``first_order``). The MaskNet reaches L
    through g alone, and g is linear in m: g(m) = ∇_b mean(m · |f(x; b) − y|), so
    ∂L/∂m = ∂/∂m mean(m · sign(f − y) · J δ) with δ = −α ⊙ ∂L/∂b′ and J δ the directional derivative
    of f along δ (one forward-mode pass). The second-order gradient, at the cost of a JVP instead of a
    double backward (tests/test_metasgd.py compares them)."""
    biases = adapted_subset(sr)
    alpha = step_sizes(log_alpha, biases)
    mask_params = dict(masknet.named_parameters())
    result = meta_objective(MetaModules(sr, masknet), biases, mask_params, tasks, losses, alpha, first_order=True)
    names = list(biases)
    leaves = [*log_alpha.values(), *mask_params.values()]
    moved = [adapted[n] for adapted in result.adapted for n in names]
    grads = torch.autograd.grad(result.loss, leaves + moved, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves + moved, grads)]
    alpha_grads, mask_grads = grads[: len(log_alpha)], grads[len(log_alpha): len(leaves)]
    fixed = {n: b.detach() for n, b in biases.items()}
    for t in range(len(tasks)):
        one = tasks.select(slice(t, t + 1))
        dl_db = grads[len(leaves) + t * len(names): len(leaves) + (t + 1) * len(names)]
        delta = {n: -(alpha[n] * g).detach() for n, g in zip(names, dl_db)}
        out, tangent = jvp(lambda b: functional_call(sr, b, (one.face_lq,)), (fixed,), (delta,))
        weight = face_weight(masknet, mask_params, one.face_lq, one.face_target)
        surrogate = (weight * ((out - one.face_target).sign() * tangent).detach()).mean()
        extra = torch.autograd.grad(surrogate, list(mask_params.values()))
        mask_grads = [g + e for g, e in zip(mask_grads, extra)]
    return result, alpha_grads, mask_grads


def meta_step(sr: torch.nn.Module, masknet: torch.nn.Module, log_alpha: Mapping[str, torch.Tensor],
              optimizer: torch.optim.Optimizer, tasks: TaskBatch, losses: LossConfig) -> dict[str, float]:
    """One outer step on log α and the MaskNet; returns the outer loss and its terms, and the same
    terms at θ unadapted (``base_loss``) for reading the curve."""
    result, alpha_grads, mask_grads = meta_gradients(sr, masknet, log_alpha, tasks, losses)
    for leaf, grad in zip([*log_alpha.values(), *masknet.parameters()], [*alpha_grads, *mask_grads]):
        leaf.grad = grad
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():  # the same terms at θ (no adaptation): L1 + texture
        out = sr(tasks.natural_lq)
        base = losses.l1 * F.l1_loss(out, tasks.natural_hq) + losses.texture * texture_distance(
            out, tasks.natural_hq, random_directions(3 * PATCH ** 2, seed=0), losses.texture_sigma)
    return {"loss": float(result.loss.detach()), **result.terms, "base_loss": float(base)}


def train_metasgd(config: MetaSgdConfig, log: Log = print) -> Path:
    """Train, logging every step to ``out_dir/log.jsonl``; returns the last checkpoint's path."""
    torch.manual_seed(config.seed)
    faces, naturals = list_images(config.faces_dir, "faces"), list_images(config.natural_dir, "natural-image")
    sr = load_supported_network(config.sr_weights).model.eval().requires_grad_(False)
    masknet = build_masknet(TrainConfig(net=NetConfig(mask_feat=config.mask_feat)))
    with torch.no_grad():  # a start at m ≈ 1 whose last layer can still learn through the layers before it
        last = masknet.body[-2]
        last.weight.normal_(0, 1e-3)
    samplers = tuple(TaskSampler(faces, naturals, config.data(ood), config.seed) for ood in (False, True))
    init = sample_tasks(samplers, sr, INIT_STEP, config.init_tasks)  # tasks no training step draws
    log_alpha = {k: v.requires_grad_() for k, v in
                 initial_log_alpha(sr, init, config.init_step, config.per_element).items()}
    optimizer = torch.optim.Adam([{"params": list(log_alpha.values()), "lr": config.lr_alpha},
                                  {"params": list(masknet.parameters()), "lr": config.lr_mask}])
    config.out_dir.mkdir(parents=True, exist_ok=True)
    log_path, path = config.out_dir / "log.jsonl", config.out_dir / "metasgd.safetensors"
    started = time.perf_counter()
    for step in range(config.steps):
        began = time.perf_counter()
        tasks = sample_tasks(samplers, sr, step, config.tasks_per_step)
        logs = meta_step(sr, masknet, log_alpha, optimizer, tasks, config.losses)
        flat = torch.cat([v.detach().flatten() for v in log_alpha.values()])
        record = {"step": step + 1, **logs, "log_alpha_mean": float(flat.mean()), "log_alpha_std": float(flat.std()),
                  "seconds": time.perf_counter() - began}
        append_log(log_path, record)
        log(json.dumps(record))
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            trained = {**{k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
                       "steps_done": step + 1, "seconds": time.perf_counter() - started,
                       "last_loss": logs["loss"], "last_base_loss": logs["base_loss"],
                       "inner_steps": 1, "subset": "bias", "gradient": "exact (inner gradient as value, MaskNet by JVP)"}
            biases = dict(sr.named_parameters())
            alphas = {k: v.detach().clone() for k, v in step_sizes(log_alpha, biases).items()}
            save_metasgd(path, alphas, masknet.state_dict(), trained)
    return path


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--faces", "faces_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--natural", "natural_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--sr-weights", default="realesrgan-x4plus")
@click.option("--steps", type=int, default=300)
@click.option("--outer-patch", type=int, default=128, help="HQ natural crop side.")
@click.option("--checkpoint-every", type=int, default=50)
@click.option("--tasks-per-step", type=int, default=2)
@click.option("--texture", type=float, default=1.0)
@click.option("--lr-alpha", type=float, default=5e-2)
@click.option("--lr-mask", type=float, default=1e-3)
@click.option("--per-element", is_flag=True, help="One step size per bias element (default: per bias tensor).")
@click.option("--seed", type=int, default=0)
def cli(**options: object) -> None:
    """Meta-learn per-element step sizes over the biases and a MaskNet for the stock network."""
    click.echo(train_metasgd(MetaSgdConfig(**options)))  # type: ignore[arg-type]


if __name__ == "__main__":
    cli()
