"""The f2n runtime: per-photo adaptation and tiled x4 inference.

Public API (everything else in the sub-modules is private):

* ``AdaptAndRun(model=, engine=, method=, config=PipelineConfig(...))(source, output)``
  runs the whole pipeline on one photo and returns a ``RunReport``; ``.enhance(rgb)`` does
  the same on an array. ``method`` is ``FaceAdaptation(detector, prior)`` (MetaF2N) or
  ``CmdsrAdaptation(condition_net)`` (CMDSR, no faces).
* ``adapt(model, patches, AdaptConfig(...)) -> AdaptResult`` is the inner loop alone.
* ``tiled_upscale(engine, image, tile=, overlap=, batch_size=, progress=)`` runs any
  ``SREngine`` over a photo; ``TorchEngine`` is the PyTorch one.
"""

from f2n.runtime.adapt import (
    AdaptConfig,
    AdaptResult,
    AdaptStep,
    adapt,
    iter_adaptation,
    masked_l1,
)
from f2n.runtime.cmdsr import CmdsrAdaptation
from f2n.runtime.face_regions import full_canvas, mask_canvas, paste_regions
from f2n.runtime.face_stage import FaceStageConfig, run_face_stage
from f2n.runtime.methods import AdaptationMethod, FaceAdaptation, MethodOutcome
from f2n.runtime.pipeline import (
    AdaptAndRun,
    Enhanced,
    PipelineConfig,
    save_adapted_weights,
)
from f2n.runtime.report import RunReport, write_report_json
from f2n.runtime.support import SupportConfig, sample_support
from f2n.runtime.tiling import TileBox, blend_weights, tile_boxes, tiled_upscale
from f2n.runtime.torch_engine import TorchEngine
from f2n.runtime.types import FaceRegion, FaceReport, FaceStageResult, PatchBatch, SREngine

__all__ = [
    "AdaptAndRun",
    "AdaptConfig",
    "AdaptResult",
    "AdaptStep",
    "AdaptationMethod",
    "CmdsrAdaptation",
    "Enhanced",
    "FaceAdaptation",
    "FaceRegion",
    "FaceReport",
    "FaceStageConfig",
    "FaceStageResult",
    "MethodOutcome",
    "PatchBatch",
    "PipelineConfig",
    "RunReport",
    "SREngine",
    "SupportConfig",
    "TileBox",
    "TorchEngine",
    "adapt",
    "blend_weights",
    "iter_adaptation",
    "full_canvas",
    "mask_canvas",
    "masked_l1",
    "paste_regions",
    "run_face_stage",
    "sample_support",
    "save_adapted_weights",
    "tile_boxes",
    "tiled_upscale",
    "write_report_json",
]
