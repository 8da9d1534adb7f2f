"""The adapt-and-run pipeline: thin glue over components that are passed in.

``AdaptAndRun(...)(source, output)`` decodes a photo, adapts a copy of the SR weights
with its adaptation method (MetaF2N faces or CMDSR, :mod:`f2n.runtime.methods`), hands
them to the engine, upscales in tiles, optionally pastes the restored faces back, and
encodes the result.
"""

import copy
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import overload
from pathlib import Path
from weakref import WeakKeyDictionary

import numpy as np
import torch

from f2n.errors import ConfigError, InputImageError
from f2n.export.protocol import SREngine
from f2n.nets.rrdbnet import RRDBNet, ValueRange
from f2n.runtime.adapt import AdaptConfig, AdaptResult, AdaptStep
from f2n.runtime.face.debug_images import save_debug
from f2n.runtime.engine_choice import EngineChoice
from f2n.runtime.face.regions import paste_regions
from f2n.runtime.heap import release_free_memory
from f2n.runtime.images import DecodedImage, PixelCanvas, output_bit_depth, read_image, upscale_alpha, write_image
from f2n.runtime.methods import AdaptationMethod, MethodOutcome
from f2n.runtime.report import RunReport, face_summary, timed
from f2n.runtime.sanity import adaptation_problem
from f2n.runtime.tiling import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    check_tiling,
    upscale_in_bands,
)
from f2n.runtime.types import SCALE, FaceRegion, FaceStageResult
from f2n.weights.checkpoint import VALUE_RANGE_META, save_safetensors_atomic
from f2n.weights.sr import RangeChoice

ADAPTED_WEIGHTS_FORMAT = "f2n-adapted-rrdbnet"


@dataclass(frozen=True)
class PipelineConfig:
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    tile: int = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP
    batch_size: int = DEFAULT_BATCH_SIZE
    adapt_enabled: bool = True  # False: --no-adapt, the base network only
    require_adaptation: bool = False  # True: a photo that cannot be adapted is an error
    paste_faces: bool = False
    progress: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.overlap, self.batch_size)
        if self.adapt_enabled:
            check_adapt_steps(self.adapt.steps)


def check_adapt_steps(steps: int) -> None:
    """0 steps would run the face stage (minutes with GPEN) for θ_0 and call it adapted."""
    if steps < 1:
        raise ConfigError(f"adaptation steps must be >= 1, got {steps} "
                          "(to run the base network only, disable adaptation: --no-adapt)")


@dataclass(frozen=True)
class Enhanced:
    """One photo's x4 result before encoding."""

    rgb: np.ndarray | PixelCanvas  # (4H, 4W, 3) float32 in [0, 1], or the output's integer pixels (enhance's bit_depth)
    alpha: np.ndarray | None  # (4H, 4W) float32 or None
    adaptation: AdaptResult | None  # None when the base network ran
    faces: FaceStageResult | None  # None when the face stage did not run
    reason: str  # why the photo was not adapted ('' if it was)
    timings: Mapping[str, float]
    method: str = ""  # the method that adapted the photo ('' if none did)
    provenance: Mapping[str, str] = field(default_factory=dict)  # how θ′ was made (or refused: the guards' figures)


@dataclass
class EngineUse:
    """One engine's photo lock and the base weights it holds, shared by every pipeline on it
    (the engine contract, :class:`~f2n.export.protocol.SREngine`: one photo at a time)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    holds: Mapping[str, torch.Tensor] | None = None  # a pipeline's base_weights when the engine holds them


_ENGINE_USES: "WeakKeyDictionary[SREngine, EngineUse]" = WeakKeyDictionary()
_ENGINE_USES_LOCK = threading.Lock()


def engine_use(engine: SREngine) -> EngineUse:
    with _ENGINE_USES_LOCK:
        return _ENGINE_USES.setdefault(engine, EngineUse())


class AdaptAndRun:
    """Components in, photos out: the SR ``model`` (θ), the ``engine`` that runs it and the
    ``method`` that adapts θ to each photo; ``engine_choice``: how ``engine`` was chosen (the
    factory's ``--engine`` resolution, for the log and the report), None for an engine given ready-made;
    ``sr_range``: θ's value range and where it came from (default: the model's own, as given);
    ``engine_holds_base``: the engine was built with ``model``'s weights (θ is then never handed
    over again; else once). ``model``'s parameters are only read: θ′ is a new mapping per photo."""

    def __init__(self, *, model: RRDBNet, engine: SREngine, method: AdaptationMethod,
                 config: PipelineConfig = PipelineConfig(), engine_choice: EngineChoice | None = None,
                 sr_range: RangeChoice | None = None, engine_holds_base: bool = False) -> None:
        self.model = model
        self.engine = engine
        self.engine_choice = engine_choice
        self.sr_range = sr_range or RangeChoice(model.value_range, "the network as given")
        self.method = method
        self.config = config
        self.base_weights = {name: p.detach() for name, p in model.named_parameters()}
        if engine_holds_base:
            engine_use(engine).holds = self.base_weights

    def with_adapt(self, adapt: AdaptConfig) -> "AdaptAndRun":
        """This pipeline with other inner-loop settings (a strength, a step budget): the same
        network, engine, method and base weights, so nothing is loaded or handed over again."""
        other = copy.copy(self)
        other.config = replace(self.config, adapt=adapt)
        return other

    def __call__(self, source: Path, output: Path, *, weights_out: Path | None = None,
                 debug_dir: Path | None = None, decoded: DecodedImage | None = None,
                 seed: int | None = None, written: list[Path] | None = None) -> RunReport:
        """``decoded``: ``source`` already read by the caller (it is then not read again);
        ``seed``: this photo's seed (default ``config.seed``). ``written``: each file is
        appended once it is complete (what an interruption leaves)."""
        seed = self.config.seed if seed is None else seed
        timings: dict[str, float] = {}
        written = [] if written is None else written
        with timed(timings, "total"):
            # 1. decode
            with timed(timings, "decode"):
                image = decoded if decoded is not None else read_image(source)
            bit_depth = output_bit_depth(output, image.bit_depth, image.alpha is not None)  # fail before the work
            # 2.-6. faces, adaptation, engine weights, tiles, optional face paste
            result = self.enhance(image.rgb, image.alpha, seed=seed, keep_face_pictures=debug_dir is not None,
                                  bit_depth=bit_depth, grayscale=image.was_grayscale)
            timings.update(result.timings)
            # 7. θ′ before the image: an image on disk makes the next run skip the photo, so it
            # must not exist unless the weights asked for do (each write is atomic). Not adapted
            # (the guard kept θ, no faces): θ itself, marked so, rather than no file at all.
            if weights_out is not None:
                with timed(timings, "save_weights"):
                    written.append(save_adapted_weights(weights_out, result.adaptation, source, result.provenance,
                                                        self.model.value_range, base=self.base_weights,
                                                        reason=result.reason))
            # 8. encode
            with timed(timings, "encode"):
                write_image(output, result.rgb, alpha=result.alpha, bit_depth=bit_depth,
                            icc_profile=image.icc_profile, exif=image.exif, grayscale=image.was_grayscale)
                written.append(output)
            if debug_dir is not None and result.faces is not None:
                with timed(timings, "save_debug"):
                    save_debug(result.faces, image.rgb, debug_dir)
                written.append(debug_dir)
        return self.report(source, output, result, timings, seed, image.warnings)

    def enhance(self, rgb: np.ndarray, alpha: np.ndarray | None = None, *, seed: int | None = None,
                keep_face_pictures: bool = True, on_step: Callable[[AdaptStep], None] | None = None,
                adapt: AdaptConfig | None = None, bit_depth: int | None = None, grayscale: bool = False) -> Enhanced:
        """Steps 2-6 on a decoded photo ((H, W, 3) float32 RGB in [0, 1]); ``seed`` draws
        its patches (default ``config.seed``). ``keep_face_pictures`` False drops the face
        stage's pictures (faces, regions) before the tiles unless the paste needs them: a
        photo run keeps them only for --save-debug. ``on_step`` sees every inner-loop step
        (its weights are live: use them before returning); ``adapt``: the inner loop's settings
        (default ``config.adapt``). ``bit_depth`` None: the x4 result is float RGB; 8 or 16: it is a
        :class:`PixelCanvas` of the output's form (``grayscale``: one channel), which the tiles are
        stored into band by band, so the float x4 result never exists whole (a photo run's output)."""
        timings: dict[str, float] = {}
        # 2.-3. adapt: the method's own steps (faces: detect, align, restore, mask, inner loop)
        if self.config.adapt_enabled:
            seed = self.config.seed if seed is None else seed
            outcome = self.method(self.model, rgb, adapt=adapt or self.config.adapt, seed=seed, on_step=on_step)
        else:
            outcome = MethodOutcome(None, "adaptation disabled (--no-adapt)", {})
        timings.update(outcome.timings)
        adaptation, faces, reason, provenance = outcome.adaptation, outcome.faces, outcome.reason, outcome.provenance
        del outcome  # it holds the face pictures, which may be dropped below
        problem = adaptation_problem(adaptation) if adaptation is not None else ""
        if problem:  # a diverged θ′ falls back to the base weights, with the reason
            adaptation, reason = None, problem
        if adaptation is None and self.config.require_adaptation:
            raise InputImageError(f"cannot adapt: {reason} (--require-adaptation is set)")
        if faces is not None and not keep_face_pictures:
            faces = replace(faces, regions=faces.regions if self.config.paste_faces else (),
                            aligned_faces=None, restored_faces=None)
        release_free_memory()  # the face stage's and inner loop's freed memory, before the output canvas
        # 4.-6. hand the weights to the engine (base weights too: the last photo's may be loaded), tile,
        # paste the restored faces (optional) into each band before it is stored
        paste = faces.regions if self.config.paste_faces and faces is not None else ()
        height, width = rgb.shape[:2]
        canvas = None if bit_depth is None else PixelCanvas.empty(height * SCALE, width * SCALE, bit_depth=bit_depth,
                                                                  grayscale=grayscale)
        sr_rgb = self.upscale(rgb, adaptation.weights if adaptation is not None else self.base_weights, timings,
                              canvas=canvas, paste=paste)
        sr_alpha = upscale_alpha(alpha) if alpha is not None else None
        method = self.method.name if adaptation is not None else ""
        return Enhanced(sr_rgb, sr_alpha, adaptation, faces, reason, timings, method, provenance)

    def enhance_snapshots(self, rgb: np.ndarray, steps: Collection[int]) -> tuple[dict[int, np.ndarray], Enhanced]:
        """The x4 output after each of ``steps`` inner-loop steps, from one inner loop of
        ``config.adapt.steps`` (the largest wanted) on all the face pairs, and the photo's result.
        Every step count is run: no pairs are held out, so no early stop and no guard. A photo that
        is not adapted gets its (base) output for every step count, as ``enhance`` would give it."""
        last = self.config.adapt.steps
        if not steps or max(steps) != last:
            raise ConfigError(f"snapshot steps {sorted(steps)} must end at the adaptation's {last} steps")
        outputs: dict[int, np.ndarray] = {}

        def snapshot(step: AdaptStep) -> None:
            if step.index in steps and step.index != last:  # the last one is the result itself
                outputs[step.index] = self.upscale(rgb, step.weights)

        result = self.enhance(rgb, on_step=snapshot, adapt=replace(self.config.adapt, holdout=0))
        if result.adaptation is None:
            return {count: result.rgb for count in steps}, result
        return {**outputs, last: result.rgb}, result

    @overload
    def upscale(self, rgb: np.ndarray, weights: Mapping[str, torch.Tensor], timings: dict[str, float] | None = None,
                *, canvas: None = None, paste: tuple[FaceRegion, ...] = ()) -> np.ndarray: ...

    @overload
    def upscale(self, rgb: np.ndarray, weights: Mapping[str, torch.Tensor], timings: dict[str, float] | None = None,
                *, canvas: PixelCanvas, paste: tuple[FaceRegion, ...] = ()) -> PixelCanvas: ...

    def upscale(self, rgb: np.ndarray, weights: Mapping[str, torch.Tensor], timings: dict[str, float] | None = None,
                *, canvas: PixelCanvas | None = None, paste: tuple[FaceRegion, ...] = ()) -> np.ndarray | PixelCanvas:
        """``rgb`` x4 by the engine holding ``weights`` (θ_0, θ_n or any snapshot), in tiles, as float
        RGB or stored into ``canvas``; ``paste``: face regions blended over each band first. The
        base weights are handed over only when the engine does not hold them already (an unadapted
        photo after an unadapted one costs no hand-over: OpenVINO's recompiles its model)."""
        timings = {} if timings is None else timings
        height, width = rgb.shape[:2]
        out = canvas if canvas is not None else np.empty((height * SCALE, width * SCALE, 3), np.float32)
        paste_timings: dict[str, float] = {}

        def store(row: int, band: np.ndarray) -> None:
            if paste:
                with timed(paste_timings, "paste"):
                    paste_regions(band, paste, row)
            if isinstance(out, PixelCanvas):
                out.store(row, band)
            else:
                out[row:row + len(band)] = band

        use = engine_use(self.engine)
        with use.lock:  # one photo at a time on an engine: its weights, then its tiles
            if weights is not self.base_weights or use.holds is not weights:
                with timed(timings, "set_weights"):
                    self.engine.set_weights(weights)
                use.holds = weights if weights is self.base_weights else None
            started = time.perf_counter()
            upscale_in_bands(self.engine, rgb, store, tile=self.config.tile, overlap=self.config.overlap,
                             batch_size=self.config.batch_size, progress=self.config.progress)
        # the report's stages add up: the paste, done between the tiles, is not the tiles' time
        pasted = paste_timings.get("paste", 0.0)
        timings["tile"] = timings.get("tile", 0.0) + time.perf_counter() - started - pasted
        if paste:
            timings["paste"] = timings.get("paste", 0.0) + pasted
        return out

    def report(self, source: Path, output: Path, result: Enhanced, timings: Mapping[str, float],
               seed: int, warnings: tuple[str, ...] = ()) -> RunReport:
        """``result``'s record, for a photo read from ``source`` and written to ``output``."""
        faces = result.faces.faces if result.faces is not None else ()
        settings = {
            **self.method.settings(), "adapt": asdict(self.config.adapt),
            "tile": self.config.tile, "overlap": self.config.overlap, "batch_size": self.config.batch_size,
            "paste_faces": self.config.paste_faces, "engine": self.engine.name,
            "sr_range": self.sr_range.value_range, "sr_range_source": self.sr_range.source,
            "sr_range_guessed": self.sr_range.guessed,
            "mask": result.faces.mask_source if result.faces is not None else None, "seed": seed,
        }
        return RunReport(
            input=str(source), output=str(output), status="ok", adapted=result.adaptation is not None,
            method=result.method, reason=result.reason, faces_found=len(faces), faces_used=sum(face.used for face in faces),
            faces=tuple(face_summary(face) for face in faces),
            losses=result.adaptation.losses if result.adaptation is not None else (),
            timings={stage: round(seconds, 4) for stage, seconds in timings.items()}, settings=settings,
            warnings=warnings, adaptation=dict(result.provenance),
        )


def save_adapted_weights(path: Path, adaptation: AdaptResult | None, source: Path, provenance: Mapping[str, str],
                         value_range: ValueRange, *, base: Mapping[str, torch.Tensor] | None = None,
                         reason: str = "") -> Path:
    """θ′ as safetensors with canonical RRDBNet names (loadable by f2n-export and
    ``load_sr_network``), how it was made (``provenance``) and the value range θ was trained
    on (read back by ``load_sr_network``) in the metadata. ``adaptation`` None: the photo was
    not adapted (``reason``), and ``base`` (θ) is written with ``adapted`` "false" and the reason."""
    metadata = {"format": ADAPTED_WEIGHTS_FORMAT, "source_photo": str(source), **provenance,
                VALUE_RANGE_META: value_range, "adapted": "true" if adaptation is not None else "false"}
    if adaptation is None:
        if base is None:
            raise ValueError("a photo that was not adapted needs the base weights to write")
        metadata["not_adapted_reason"] = reason
    weights = adaptation.weights if adaptation is not None else base
    return save_safetensors_atomic(path, {k: v.detach().to("cpu", torch.float32) for k, v in weights.items()}, metadata)
