"""The batch driver: photos not yet finished → Ray Data → manifest, with progress.

Each photo is its own block and each worker holds one at a time, so a worker that dies
loses only the photo it held (Ray restarts the worker and hands it the photo again, up to
``attempts`` times); results stream back in the order they finish and each is in the
manifest before the next is counted.
"""

import json
import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from f2n import errors
from f2n.errors import EngineUnavailableError
from f2n.runtime.batch.inputs import Photo
from f2n.runtime.batch.manifest import Manifest
from f2n.runtime.batch.storage import make_folder, remove_folder
from f2n.runtime.batch.worker import PhotoWorker
from f2n.runtime.options import PipelineOptions

Echo = Callable[[str], None]


@dataclass(frozen=True)
class ClusterOptions:
    address: str | None = None  # None: start a local Ray instance (or use the one already initialised)
    workers: int | None = None  # None: as many as the cluster's CPUs (or GPUs) allow
    cpus_per_worker: int = 1
    gpus_per_worker: float | None = None  # None: 1 when the pipeline runs on CUDA, else 0
    attempts: int = 3  # tries of a photo whose worker dies under it


def check_batch_options(options: PipelineOptions) -> None:
    """Options a batch refuses: an oracle prior cuts the faces' targets out of one ground truth,
    which would give every photo the same targets (f2n-adapt-and-run takes it, for one photo;
    f2n-eval study runs oracles over photos paired with their own ground truths)."""
    if options.oracle:
        raise errors.ConfigError(f"--prior {options.prior.partition(':')[0]}:GT_PATH is for one photo "
                                 "(f2n-adapt-and-run), not a batch: each photo would need its own ground truth")


def run_batch(photos: list[Photo], manifest: Manifest, options: PipelineOptions, cluster: ClusterOptions,
              attempts_dir: str | Path, echo: Echo) -> None:
    """Process every photo of ``photos`` that ``manifest`` has not finished; append a line per photo.
    ``attempts_dir``: a folder or URI for the attempt counts that every worker can write (beside the outputs)."""
    check_batch_options(options)
    todo = [photo for photo in photos if manifest.status(photo.source) != "ok"]
    retried = sum(manifest.status(photo.source) == "failed" for photo in todo)
    echo(f"{len(photos)} photo(s): {len(photos) - len(todo)} already finished, {len(todo)} to do"
         + (f" ({retried} failed before, tried again)" if retried else ""))
    if not todo:
        return
    ray = import_ray()
    attempts_dir = str(attempts_dir)
    remove_folder(attempts_dir)  # counts of a run that was stopped: this run starts afresh
    make_folder(attempts_dir)
    meter = Throughput(len(todo))
    with ray_session(ray, cluster.address):
        for line in stream_results(ray, todo, options, cluster, attempts_dir, echo):
            if "setup_error" in line:  # the pipeline cannot be built: no photo is at fault
                error = line["setup_error"]
                raise getattr(errors, error["type"], errors.F2NError)(f"a worker cannot start: {error['message']}")
            manifest.append(line)
            echo(meter.add(line))
    echo(meter.summary())
    missing = len(todo) - meter.done
    if missing:  # blocks Ray itself gave up on (max_errored_blocks): not in the manifest, so retried next run
        echo(f"{missing} photo(s) got no result from Ray; run again to retry them")
    remove_folder(attempts_dir)


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise EngineUnavailableError(f"f2n-batch needs Ray Data ({error}): pip install 'f2n[ray]'") from None
    return ray


@contextmanager
def ray_session(ray: Any, address: str | None) -> Iterator[None]:
    """Connect to ``address`` (or start Ray on this machine); a session already open is used
    as it is and left open."""
    if ray.is_initialized():
        yield
        return
    sigterm = signal.getsignal(signal.SIGTERM)
    # the workers' own output stays in Ray's logs: each photo's outcome is its manifest line
    ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    if sigterm is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, sigterm)  # ray.init installs its own, which exits at once with 15
    try:
        yield
    finally:
        ray.shutdown()


def stream_results(ray: Any, todo: list[Photo], options: PipelineOptions, cluster: ClusterOptions,
                   attempts_dir: str, echo: Echo) -> Iterator[dict[str, Any]]:
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no plan and timing chatter between progress lines
    context = ray.data.DataContext.get_current()
    context.max_errored_blocks = -1  # a photo Ray gives up on is reported by the driver, not a failed job
    context.enable_progress_bars = False  # one progress line per photo instead
    resources = ray.cluster_resources()
    on_gpu = options.device == "cuda" or (options.device is None and resources.get("GPU", 0) > 0)
    gpus = cluster.gpus_per_worker if cluster.gpus_per_worker is not None else (1.0 if on_gpu else 0.0)
    capacity = resources.get("GPU", 0) / gpus if gpus else resources.get("CPU", 1) / cluster.cpus_per_worker
    workers = min(cluster.workers or max(1, int(capacity)), len(todo))
    echo(f"{workers} worker(s), each {cluster.cpus_per_worker} CPU(s)" + (f" and {gpus:g} GPU(s)" if gpus else ""))
    dataset = ray.data.from_items([asdict(photo) for photo in todo], override_num_blocks=len(todo))
    results = dataset.map_batches(
        PhotoWorker, batch_size=1,
        fn_constructor_kwargs={"options": options, "attempts_dir": attempts_dir, "max_attempts": cluster.attempts,
                               "threads": cluster.cpus_per_worker},
        compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
        num_cpus=cluster.cpus_per_worker, num_gpus=gpus,
    )
    for row in results.iter_rows():
        yield json.loads(row["line"])


class Throughput:
    """Photos per second in total and per worker, since the first result was expected."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.start = time.perf_counter()
        self.done = 0
        self.per_worker: dict[str, list[float]] = defaultdict(list)  # worker -> seconds per photo

    def add(self, line: dict[str, Any]) -> str:
        self.done += 1
        seconds = float(line.get("timings", {}).get("total", 0.0))
        if line.get("worker"):
            self.per_worker[line["worker"]].append(seconds)
        elapsed = time.perf_counter() - self.start
        what = line["status"] if line["status"] == "ok" else f"failed ({line.get('reason', '')})"
        return (f"[{self.done}/{self.total}] {what} {line['input']} ({seconds:.1f} s on {line.get('worker') or '-'}); "
                f"{self.done / elapsed:.2f} photos/s")

    def summary(self) -> str:
        elapsed = time.perf_counter() - self.start
        lines = [f"{self.done} photo(s) in {elapsed:.1f} s: {self.done / elapsed:.2f} photos/s in total"]
        for worker, seconds in sorted(self.per_worker.items()):
            busy = sum(seconds)
            lines.append(f"  {worker}: {len(seconds)} photo(s), {len(seconds) / elapsed:.2f} photos/s "
                         f"({busy / len(seconds):.2f} s per photo in the pipeline)")
        return "\n".join(lines)
