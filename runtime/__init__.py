"""The f2n runtime: per-photo adaptation and tiled x4 inference.

Public API (everything else in the sub-modules is private):

* ``build_pipeline(checkpoint, engine=, prior=, requested=...)`` assembles the pipeline
  that every command runs: the checkpoint's adaptation settings (``resolve_settings``),
  its MaskNet, the engine (``make_engine``; ``auto`` chooses it, ``pipeline.engine_choice``
  says how), the adaptation method (faces, CMDSR, ReDegNet) and the prior.
* ``AdaptAndRun(model=, engine=, method=, config=PipelineConfig(...))(source, output)``
  runs the whole pipeline on one photo and returns a ``RunReport``; ``.enhance(rgb)`` does
  the same on an array. ``method`` is ``FaceAdaptation(detector, prior)`` (MetaF2N) or
  ``CmdsrAdaptation(condition_net)`` (CMDSR, no faces).
* ``adapt(model, patches, AdaptConfig(...)) -> AdaptResult`` is the inner loop alone; an objective
  with the critic or perceptual term also takes ``loss_networks=load_loss_networks(...)``.
* ``tiled_upscale(engine, rgb, tile=, overlap=, batch_size=, progress=)`` runs any
  ``SREngine`` over a float RGB photo; ``TorchEngine`` is the PyTorch one.
  ``upscale_in_bands(engine, rgb, sink, ...)`` hands the result over in bands of rows instead,
  e.g. into a ``PixelCanvas`` (the output's uint8/uint16 pixels, what ``write_image`` encodes).
"""

from f2n.export.protocol import SREngine
from f2n.export.torch_engine import TorchEngine
from f2n.runtime.adapt import (
    AdaptConfig,
    AdaptResult,
    AdaptStep,
    adapt,
    iter_adaptation,
    masked_l1,
)
from f2n.runtime.build import (
    AdaptationSettings,
    build_pipeline,
    checkpoint_masknet,
    checkpoint_settings,
    load_supported_network,
    make_engine,
    resolve_settings,
)
from f2n.runtime.cmdsr import CmdsrAdaptation
from f2n.runtime.face.align import face_template
from f2n.runtime.face.detect import Detections, RetinaFaceDetector
from f2n.runtime.face.prior import FacePrior, OraclePrior, make_prior
from f2n.runtime.face.regions import full_canvas, mask_canvas, paste_regions
from f2n.runtime.face.stage import Detector, FaceStageConfig, patch_weights, run_face_stage, select_faces
from f2n.runtime.images import (
    IMAGE_SUFFIXES,
    DecodedImage,
    PixelCanvas,
    image_files,
    read_image,
    upscale_alpha,
    write_image,
)
from f2n.runtime.loss_networks import LossNetworks, load_loss_networks
from f2n.runtime.methods import AdaptationMethod, FaceAdaptation, MethodOutcome
from f2n.runtime.pipeline import (
    AdaptAndRun,
    Enhanced,
    PipelineConfig,
    save_adapted_weights,
)
from f2n.runtime.report import RunReport, write_report_json
from f2n.runtime.support import SupportConfig, sample_support, support_boxes
from f2n.runtime.tiling import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    TileBox,
    blend_weights,
    tile_boxes,
    tiled_upscale,
    upscale_in_bands,
)
from f2n.runtime.types import SCALE, FaceRegion, FaceReport, FaceStageResult, PatchBatch

__all__ = [
    "SCALE",
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE",
    "AdaptAndRun",
    "AdaptConfig",
    "AdaptResult",
    "AdaptStep",
    "AdaptationMethod",
    "AdaptationSettings",
    "CmdsrAdaptation",
    "DecodedImage",
    "Detections",
    "Detector",
    "Enhanced",
    "FaceAdaptation",
    "FacePrior",
    "FaceRegion",
    "FaceReport",
    "FaceStageConfig",
    "FaceStageResult",
    "IMAGE_SUFFIXES",
    "LossNetworks",
    "MethodOutcome",
    "OraclePrior",
    "PatchBatch",
    "PipelineConfig",
    "PixelCanvas",
    "RetinaFaceDetector",
    "RunReport",
    "SREngine",
    "SupportConfig",
    "TileBox",
    "TorchEngine",
    "adapt",
    "blend_weights",
    "build_pipeline",
    "checkpoint_settings",
    "face_template",
    "image_files",
    "iter_adaptation",
    "full_canvas",
    "checkpoint_masknet",
    "load_loss_networks",
    "load_supported_network",
    "make_engine",
    "make_prior",
    "mask_canvas",
    "masked_l1",
    "patch_weights",
    "paste_regions",
    "read_image",
    "resolve_settings",
    "run_face_stage",
    "sample_support",
    "save_adapted_weights",
    "support_boxes",
    "select_faces",
    "tile_boxes",
    "tiled_upscale",
    "upscale_alpha",
    "upscale_in_bands",
    "write_image",
    "write_report_json",
]
