"""Training checkpoints: two safetensors files per saved step, in ``<run>/checkpoints/``.

* ``step_NNNNNNN.safetensors``: an f2n checkpoint (``f2n.weights.save_f2n_checkpoint``) of
  θ (its EMA when enabled) and θ_m with the adaptation defaults (α, 1 step, sgd) — or,
  for CMDSR, θ and the ConditionNet with its config. This is the file
  ``f2n-adapt-and-run --checkpoint`` and ``load_sr_network`` read.
* ``step_NNNNNNN.train.safetensors``: what resuming needs beyond it: raw θ, θ_m, D, the
  EMA (or the ConditionNet), the optimiser states (tensors as ``optim.<name>.<param index>.<key>``, the rest as
  JSON), the step and the config (JSON metadata).

The train file is written first: a step whose f2n checkpoint exists is complete. The MMRB
restorer's runs (``f2n-train --method mmrb``) use the same pair, with the restorer file
(:mod:`f2n.weights.mmrb`) in place of the f2n checkpoint; ReDegNet's runs write the train
file and their networks in the official layout beside it.

Every trainer captures (:func:`capture`), resumes (:func:`resume`) and logs
(:func:`append_log`) through this module, so a resumed run restores the same things and is
checked the same way whichever method trained it.
"""

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from f2n.errors import ConfigError, WeightsError
from f2n.nets.rrdbnet import ValueRange
from f2n.weights import load_into, save_f2n_checkpoint
from f2n.weights.checkpoint import VALUE_RANGE_META, save_safetensors_atomic

TRAIN_FORMAT = "f2n-train-state/1"
SUFFIX = ".safetensors"
TRAIN_SUFFIX = ".train.safetensors"


@dataclass(frozen=True)
class TrainState:
    """Everything a resumed run restores. ``modules`` and ``optimizers`` are state dicts by name
    (e.g. ``sr``, ``masknet``, ``disc``, ``ema``; optimisers ``sr``, ``masknet``, ``disc``)."""

    step: int
    modules: dict[str, dict[str, torch.Tensor]]
    optimizers: dict[str, dict[str, Any]]
    config: dict[str, Any]


# config keys a resumed run changes by design: not reported as changes
_PER_INVOCATION = frozenset({"steps", "resume", "out_dir"})


def capture(step: int, modules: Mapping[str, nn.Module | None], optimizers: Mapping[str, torch.optim.Optimizer | None],
            config: Mapping[str, Any]) -> TrainState:
    """The train state of ``step``: the modules' and optimisers' states by name (None: not in
    this run) and ``config`` (the run's config as JSON-able values, its resume path left out)."""
    # cloned: safetensors refuses tensors that share storage (ReDegNet's discriminator registers
    # its convs under two names), and the state must not change while it is written
    states = {name: {key: value.detach().clone() for key, value in module.state_dict().items()}
              for name, module in modules.items() if module is not None}
    return TrainState(step, states, {name: opt.state_dict() for name, opt in optimizers.items() if opt is not None},
                      dict(config))


def resume(path: Path, modules: Mapping[str, nn.Module | None], optimizers: Mapping[str, torch.optim.Optimizer | None],
           config: Mapping[str, Any], fixed: Collection[str], log: Callable[[str], None]) -> int:
    """Restore the train state at ``path`` (a checkpoint or a run folder) into ``modules`` and
    ``optimizers`` and return its step. The state must hold exactly this run's networks and
    optimisers, and the config keys named in ``fixed`` (dotted, a group or one field) must be
    as saved: a ConfigError otherwise. Other changed keys are named in the log line."""
    state = load_checkpoint(path)
    saved, now = _flat(state.config), _flat(json.loads(json.dumps(config)))  # tuples as the JSON lists saved
    changed = sorted(key for key in saved.keys() | now.keys()
                     if saved.get(key) != now.get(key) and key.rsplit(".", 1)[-1] not in _PER_INVOCATION)
    wrong = [key for key in changed if any(key == f or key.startswith(f + ".") for f in fixed)]
    if wrong:
        differences = "; ".join(f"{key}: {saved.get(key)!r} there, {now.get(key)!r} here" for key in wrong)
        raise ConfigError(f"resume checkpoint {path} was trained with other settings ({differences}): "
                          "keep them to resume, or start a new run from its weights")
    trained = {name for name, module in modules.items() if module is not None}
    stepped = {name for name, opt in optimizers.items() if opt is not None}
    if set(state.modules) != trained or set(state.optimizers) != stepped:
        raise ConfigError(f"resume checkpoint {path} holds {sorted(state.modules)} (optimisers "
                          f"{sorted(state.optimizers)}), this run trains {sorted(trained)} (optimisers "
                          f"{sorted(stepped)}): keep the networks, loss terms and EMA setting of the run being resumed")
    for name in trained:
        module = modules[name]
        device = next(module.parameters()).device
        load_into(module, {k: v.to(device) for k, v in state.modules[name].items()}, what=f"{name} of {path}")
    for name in stepped:
        optimizers[name].load_state_dict(state.optimizers[name])  # moves the moments to the parameters' device
    log(f"resumed from {path} at step {state.step}" + (f" (changed since: {', '.join(changed)})" if changed else ""))
    return state.step


def method_config(method: str, config: Any) -> dict[str, Any]:
    """A method's dataclass config as a train state records it: JSON values, the method named,
    the resume path left out (a property of this invocation, not of the run)."""
    return {"method": method, **json.loads(json.dumps(asdict(replace(config, resume=None)), default=str))}


def append_log(path: Path, record: Mapping[str, object]) -> None:
    """One JSON line of a run's ``log.jsonl``."""
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def checkpoint_paths(run_dir: Path, step: int) -> tuple[Path, Path]:
    """(f2n checkpoint, train-state file) of ``step``."""
    stem = Path(run_dir) / "checkpoints" / f"step_{step:07d}"
    return stem.with_suffix(SUFFIX), stem.with_suffix(TRAIN_SUFFIX)


def save_checkpoint(
    run_dir: Path,
    state: TrainState,
    deploy_sr: Mapping[str, torch.Tensor],
    alpha: float | None,
    condition_config: Mapping[str, object] | None = None,
    value_range: ValueRange = "unit",
) -> Path:
    """Write both files of ``state.step``; returns the f2n checkpoint's path. ``deploy_sr``
    is the θ users get (the EMA when enabled); ``alpha`` the MetaF2N inner step size (None
    for CMDSR); ``condition_config`` the config of ``state.modules["condition"]`` (CMDSR);
    ``value_range`` the range θ runs in (a signed start such as F2N-ESRGAN stays signed)."""
    f2n_path = checkpoint_paths(run_dir, state.step)[0]
    save_train_state(run_dir, state)
    meta: dict[str, object] = {"train_step": state.step, VALUE_RANGE_META: value_range}
    if alpha is not None:  # θ was meta-trained for one SGD step of size α
        meta.update(alpha=alpha, steps=1, optimizer="sgd")
    condition = state.modules["condition"] if condition_config is not None else None
    return save_f2n_checkpoint(f2n_path, deploy_sr, state.modules.get("masknet"), meta,
                               condition_state=condition, condition_config=condition_config)


def save_train_state(run_dir: Path, state: TrainState) -> Path:
    """Write the train-state file of ``state.step`` (the deployable file beside it is the
    trainer's to write, after this one: a step whose deployable file exists is complete)."""
    train_path = checkpoint_paths(run_dir, state.step)[1]
    train_path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, module_state in state.modules.items():
        tensors.update({f"{name}.{key}": value for key, value in module_state.items()})
    optim_meta: dict[str, Any] = {}
    for name, optim_state in state.optimizers.items():
        for index, per_param in optim_state["state"].items():
            tensors.update({f"optim.{name}.{index}.{key}": value for key, value in per_param.items()})
        optim_meta[name] = optim_state["param_groups"]
    metadata = {
        "f2n_train_format": TRAIN_FORMAT,
        "step": str(state.step),
        "config": json.dumps(state.config, sort_keys=True),
        "optimizers": json.dumps(optim_meta),
        "modules": json.dumps(sorted(state.modules)),
    }
    return save_safetensors_atomic(train_path, tensors, metadata)


def load_checkpoint(path: Path) -> TrainState:
    """Read a train state from its f2n checkpoint, its train file, or a run folder (its latest train file)."""
    train_path = _train_file(Path(path))
    try:
        with safe_open(str(train_path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise WeightsError(f"cannot read training checkpoint {train_path} ({error}); the file is corrupt or truncated") from None
    if metadata.get("f2n_train_format") != TRAIN_FORMAT:
        raise WeightsError(f"{train_path} has format {metadata.get('f2n_train_format')!r}, expected {TRAIN_FORMAT!r}")
    modules: dict[str, dict[str, torch.Tensor]] = {name: {} for name in json.loads(metadata["modules"])}
    optimizers: dict[str, dict[str, Any]] = {
        name: {"state": {}, "param_groups": groups} for name, groups in json.loads(metadata["optimizers"]).items()
    }
    for key, value in tensors.items():
        head, rest = key.split(".", 1)
        if head == "optim":
            name, index, field = rest.split(".", 2)
            optimizers[name]["state"].setdefault(int(index), {})[field] = value
        else:
            modules[head][rest] = value
    return TrainState(int(metadata["step"]), modules, optimizers, json.loads(metadata["config"]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The f2n checkpoint of the highest complete step in ``run_dir``, or None."""
    folder = Path(run_dir) / "checkpoints"
    complete = [p for p in folder.glob("step_*" + SUFFIX) if not p.name.endswith(TRAIN_SUFFIX)
                and p.with_name(p.name[: -len(SUFFIX)] + TRAIN_SUFFIX).is_file()]
    return max(complete, default=None)


def latest_train_state(run_dir: Path) -> Path | None:
    """The train-state file of the highest saved step in ``run_dir``, or None. Each is written
    atomically, so it is complete even where the deployable file beside it is not (and runs that
    deploy other files, as ``--method redegnet``, have none)."""
    return max((Path(run_dir) / "checkpoints").glob("step_*" + TRAIN_SUFFIX), default=None)


def _train_file(path: Path) -> Path:
    if path.is_dir():
        latest = latest_train_state(path)
        if latest is None:
            raise ConfigError(f"resume folder {path} holds no training checkpoint, expected checkpoints/step_*{TRAIN_SUFFIX}")
        return latest
    if path.name.endswith(TRAIN_SUFFIX):
        return path
    if path.name.endswith(SUFFIX):
        train = path.with_name(path.name[: -len(SUFFIX)] + TRAIN_SUFFIX)
        if train.is_file():
            return train
        raise ConfigError(f"{path} has no training state beside it (expected {train.name}): it can be deployed, not resumed")
    raise ConfigError(f"resume path {path} is neither a run folder nor a {SUFFIX} checkpoint")
