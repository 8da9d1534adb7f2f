"""f2n-batch: the per-photo pipeline over a photo collection on Ray Data, with a manifest
that makes each photo written once and a stopped run resumable. Ray is imported only when
a batch runs (``pip install 'f2n[ray]'``)."""

from f2n.runtime.batch.build import PipelineOptions, build_pipeline
from f2n.runtime.batch.inputs import Photo, plan_photos
from f2n.runtime.batch.manifest import Manifest
from f2n.runtime.batch.run import ClusterOptions, run_batch

__all__ = ["ClusterOptions", "Manifest", "Photo", "PipelineOptions", "build_pipeline", "plan_photos", "run_batch"]
