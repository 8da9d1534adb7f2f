"""The one place where the app and the ComfyUI nodes turn their settings into a pipeline:
the pipeline's one :class:`PipelineOptions` through its one factory, so they build it exactly as
f2n-adapt-and-run does. A pipeline is built once per settings and reused across photos:
weights, engine and prior are not loaded again per click, nor for another adaptation strength
(it only scales θ′ − θ after the inner loop)."""

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

from f2n.export.engines import ENGINES as ENGINE_NAMES
from f2n.runtime.engine_choice import AUTO
from f2n.runtime.options import PipelineOptions, pipeline_from_options
from f2n.runtime.pipeline import AdaptAndRun
from f2n.runtime.face.prior_conventions import PRIOR_NAMES as PRIOR_REGISTRY

ENGINES = (AUTO, *ENGINE_NAMES)  # an engine this machine lacks is one line in the page
PRIOR_NAMES = tuple(PRIOR_REGISTRY)


@dataclass(frozen=True)
class Settings:
    """What a user picks in the page or a node. ``steps``, ``strength`` None: the checkpoint's or f2n's
    default; ``adapt`` False: the base network only (``--no-adapt``); ``guard`` False: ``--no-guard``;
    ``strength``: θ + strength·(θ′ − θ) goes to the engine (``--strength``)."""

    checkpoint: str = "realesrgan-x4plus"
    prior: str = "gpen"
    engine: str = "auto"
    device: str | None = None
    steps: int | None = None
    adapt: bool = True
    guard: bool = True
    strength: float | None = None

    def options(self) -> PipelineOptions:
        return PipelineOptions(checkpoint=self.checkpoint, prior=self.prior, engine=self.engine, device=self.device,
                               steps=self.steps if self.adapt else None, no_adapt=not self.adapt,
                               no_guard=not self.guard, strength=self.strength if self.adapt else None)


class PipelineCache:
    """The last ``size`` pipelines by settings other than the strength. ``get`` builds under a lock,
    so two sessions asking for the same new settings at once build it once."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._built: OrderedDict[Settings, AdaptAndRun] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, settings: Settings) -> AdaptAndRun:
        settings.options()  # option errors before the lock and any loading
        key = replace(settings, strength=None)  # the checkpoint's or f2n's strength, built once
        with self._lock:
            if key in self._built:
                self._built.move_to_end(key)
                pipeline = self._built[key]
            else:
                pipeline = pipeline_from_options(key.options())
                self._built[key] = pipeline
                while len(self._built) > self.size:
                    self._built.popitem(last=False)
        if settings.strength is None or not settings.adapt:
            return pipeline
        return pipeline.with_adapt(replace(pipeline.config.adapt, strength=settings.strength))
