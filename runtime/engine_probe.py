"""The measurements behind ``--engine auto`` on the CPU: each candidate engine timed once per
machine class and network architecture, on a small real photo, and cached.

Per candidate: the weight hand-over (``set_weights`` of a perturbed θ, as a photo's θ′ arrives)
and the tiles (one warm-up run, then the best of :data:`ROUNDS`) on a :data:`PROBE_SIDE`² crop of
scikit-image's astronaut; its PSNR against the torch engine's fp32 output on the same crop. Every
engine runs with ONE thread and is timed in process CPU time, as ``f2n-bench`` times stages: on a
shared machine wall time swings with other jobs (a first version timed wall time with all cores
at load ~11 on 2 cores and ranked OpenVINO fp32 above OpenVINO bf16, which is ~2x faster alone);
the ranking at one thread is the ranking at two in issue 27's table. About 20 s on a quiet 2-core
CPU for Real-ESRGAN x4plus, once: the figures are kept in
``$F2N_HOME/engine_probe/<cpu class>-<architecture>.json`` and measured again only for a
candidate not in the file or when a library's version changed. ``$F2N_ENGINE_PROBE=0`` turns the
probe off (``auto`` then follows the measured rule of :mod:`f2n.runtime.engine_choice`); the tests
do, apart from those of the probe itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from f2n.cpu_features import this_cpu_class
from f2n.errors import ConfigError, F2NError
from f2n.fileio import f2n_home, machine_lock, write_text_atomic
from f2n.runtime.engine_choice import Measurement
from f2n.runtime.psnr import psnr
from f2n.export.protocol import SREngine

log = logging.getLogger(__name__)
PROBE_ENV = "F2N_ENGINE_PROBE"
PROBE_SIDE = 40  # LR pixels: one tile, small enough for a first run of ~30 s with five candidates
ROUNDS = 2
FORMAT = 1
LIBRARIES = ("f2n", "torch", "openvino", "ncnn", "onnxruntime")

MakeEngine = Callable[[str, str], SREngine]  # (engine, precision) -> an engine with the base θ, one thread


def probe_enabled() -> bool:
    value = os.environ.get(PROBE_ENV, "1").strip()
    if value not in ("0", "1"):
        raise ConfigError(f"${PROBE_ENV} must be 1 or 0, got {value!r}")
    return value == "1"


def architecture(model: torch.nn.Module) -> str:
    """What the speed depends on besides the CPU: the network's shape (not its values)."""
    shapes = [tuple(value.shape) for value in model.state_dict().values()]
    blocks = sum(1 for name in model.state_dict() if name.endswith("rdb1.conv1.weight"))
    digest = hashlib.sha256(repr((shapes, getattr(model, "value_range", "unit"))).encode()).hexdigest()[:8]
    return f"rrdbnet-{blocks}b-{shapes[0][0]}f-{digest}"


def versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = ""
    return found


def cache_path(model: torch.nn.Module) -> Path:
    return f2n_home() / "engine_probe" / f"{this_cpu_class()}-{architecture(model)}.json"


def probe_photo(side: int = PROBE_SIDE) -> np.ndarray:
    """Real pixels with a face (scikit-image's astronaut, shipped in the package), (side, side, 3) in [0, 1]."""
    import cv2
    import skimage.data  # imported here: loading scikit-image costs ~1 s

    return cv2.resize(skimage.data.astronaut(), (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def measure_engine(engine: SREngine, precision: str, tiles: torch.Tensor, reference: torch.Tensor,
                   theta: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> Measurement:
    """Hand-over, tile time and PSNR of one engine (see the module docstring)."""
    start = time.process_time()
    engine.set_weights(theta)
    handover = time.process_time() - start
    engine.set_weights(base)  # the PSNR is against torch fp32 with the base θ
    output = engine.run(tiles)  # warm-up
    best = math.inf
    for _ in range(ROUNDS):
        start = time.process_time()
        engine.run(tiles)
        best = min(best, time.process_time() - start)
    megapixels = tiles.shape[0] * tiles.shape[2] * tiles.shape[3] / 1e6
    return Measurement(engine.name, precision, handover, best / megapixels,
                       psnr(output.clamp(0, 1).numpy(), reference.clamp(0, 1).numpy()))


def measure_candidates(model: torch.nn.Module, candidates: Sequence[tuple[str, str]],
                       make: MakeEngine) -> list[Measurement]:
    from f2n.export.torch_engine import TorchEngine

    tiles = torch.from_numpy(probe_photo().transpose(2, 0, 1).copy()).unsqueeze(0)
    reference = TorchEngine(model).run(tiles)
    base = {name: value.detach().clone() for name, value in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    theta = {name: value + 1e-4 * torch.randn(value.shape, generator=generator) for name, value in base.items()}
    found = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the torch engine's one thread; the others get theirs from ``make``
    try:
        for name, precision in candidates:
            try:
                found.append(measure_engine(make(name, precision), precision, tiles, reference, theta, base))
            except (F2NError, RuntimeError, ImportError, OSError) as error:  # a candidate that cannot run here
                found.append(Measurement(name, precision, error=f"{type(error).__name__}: {error}".splitlines()[0]))
    finally:
        torch.set_num_threads(threads)
    return found


def cached_measurements(model: torch.nn.Module, candidates: Sequence[tuple[str, str]],
                        make: MakeEngine) -> list[Measurement]:
    """The probe's figures for ``candidates``: from the cache, measuring (and saving) the missing
    ones. One process of a machine measures at a time: f2n-batch's workers start together, and
    probes side by side would each time the others' load (and a different engine could win in
    each worker); the others wait, then read its figures."""
    path = cache_path(model)
    current = versions()
    known = _read_cache(path, current)
    if all(pair in known for pair in candidates):
        return [known[pair] for pair in candidates]
    with machine_lock(path):
        known = _read_cache(path, current)  # measured by another process while this one waited?
        missing = [pair for pair in candidates if pair not in known]
        if missing:
            log.info("timing the engines %s once for %s (cached in %s)", missing, this_cpu_class(), path)
            known.update({(m.engine, m.precision): m for m in measure_candidates(model, missing, make)})
            payload = {"format": FORMAT, "machine_class": this_cpu_class(), "versions": current,
                       "measurements": [asdict(m) for m in known.values()]}
            try:
                write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
            except OSError as error:  # an unwritable cache costs a probe per run, not the run
                log.warning("could not cache the engine probe in %s: %s", path, error)
    return [known[pair] for pair in candidates]


def _read_cache(path: Path, current: dict[str, str]) -> dict[tuple[str, str], Measurement]:
    """The cached figures measured with the ``current`` library versions (none if absent or unreadable)."""
    try:
        payload = json.loads(path.read_text())
        if payload.get("format") == FORMAT and payload.get("versions") == current:
            return {(m["engine"], m["precision"]): Measurement(**m) for m in payload["measurements"]}
    except (OSError, ValueError, TypeError, KeyError):
        pass
    return {}
