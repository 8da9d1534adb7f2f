"""f2n-batch: the per-photo pipeline over a photo collection on Ray Data, with a manifest
that makes each photo written once and a stopped run resumable. Ray is imported only when
a batch runs (``pip install 'f2n[ray]'``)."""

from f2n.runtime.batch.inputs import Photo, plan_photos
from f2n.runtime.batch.manifest import Manifest
from f2n.runtime.batch.run import ClusterOptions, run_batch
from f2n.runtime.options import PipelineOptions, pipeline_from_options  # what run_batch's workers build from

__all__ = ["ClusterOptions", "Manifest", "Photo", "PipelineOptions", "pipeline_from_options", "plan_photos",
           "run_batch"]
