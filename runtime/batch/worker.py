"""The long-lived batch worker: builds the pipeline once, then runs photos through it.

Ray Data calls it with a batch of photo rows (``source``, ``output``, ``seed``) and gets
back one manifest line per photo, as JSON text. θ′ lives and dies inside ``__call__``: only
the report leaves the worker. A photo that fails is a ``failed`` line, never an exception
that would fail the job; so is a photo that its workers died on ``max_attempts`` times
(Ray restarts a dead worker and hands it the same photo again: the attempts are counted in
files beside the outputs, which every worker of the batch can see). A worker that cannot
build its pipeline (missing weights) answers every photo with a ``setup_error`` line, which
the driver turns into one error line for the whole run. Nothing here imports Ray.
"""

import hashlib
import json
import os
import socket
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from f2n.errors import F2NError, breaks_the_device
from f2n.runtime.batch.storage import join, local_copy, read_text, write_text, written_to
from f2n.runtime.options import PipelineOptions, pipeline_from_options
from f2n.runtime.report import RunReport


class PhotoWorker:
    def __init__(self, options: PipelineOptions, attempts_dir: str, max_attempts: int, threads: int = 1) -> None:
        torch.set_num_threads(threads)  # the CPUs Ray gave this worker, not every core of the node
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.attempts = AttemptCounter(attempts_dir)
        self.max_attempts = max_attempts
        self.setup_error: F2NError | None = None
        try:
            self.pipeline = pipeline_from_options(options, threads=threads)  # OpenVINO and ONNX Runtime too, not only torch
        except F2NError as error:  # raised here, Ray would restart the worker for ever
            self.setup_error = error

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        lines = [self.process(str(source), str(output), int(seed))
                 for source, output, seed in zip(batch["source"], batch["output"], batch["seed"])]
        return {"line": np.array([json.dumps(line, default=float) for line in lines], dtype=object)}

    def process(self, source: str, output: str, seed: int) -> dict[str, Any]:
        """Run one photo (paths or URIs) and return its manifest line."""
        if self.setup_error is not None:
            error = {"type": type(self.setup_error).__name__, "message": str(self.setup_error)}
            return {**failed(source, str(self.setup_error)), "setup_error": error, "worker": self.name}
        attempt = self.attempts.start(source)
        if attempt > self.max_attempts:
            report = failed(source, f"its worker died on it {attempt - 1} time(s) (out of memory or a crash?)")
            return {**report, "seed": seed, "worker": self.name, "attempt": attempt}
        try:
            with local_copy(source) as path, written_to(output) as target:
                report = self.pipeline(path, target, seed=seed).to_dict()
            if report["output"] is not None:
                report["output"] = output  # the URI, not the temp file it was uploaded from
        except F2NError as error:
            report = failed(source, str(error))
        except Exception as error:  # an unforeseen failure fails this photo, not the batch
            if breaks_the_device(error):  # every later photo here would fail: end this worker, Ray
                os._exit(1)  # starts a fresh one and hands it the photo again (counted as an attempt)
            first_line = next(iter(str(error).strip().splitlines()), "")
            report = failed(source, f"unexpected {type(error).__name__}: {first_line}")
        choice = self.pipeline.engine_choice  # auto may choose differently on each kind of worker
        return {**report, "input": source, "seed": seed, "worker": self.name, "attempt": attempt,
                **({"engine": choice.to_dict()} if choice is not None else {})}


class AttemptCounter:
    """How many times a photo was started in this run, one small file per photo."""

    def __init__(self, folder: str) -> None:
        self.folder = str(folder)  # a local folder or a URI that every worker can write

    def start(self, source: str) -> int:
        path = join(self.folder, hashlib.sha256(source.encode("utf-8")).hexdigest()[:32])
        attempt = 1 + int(read_text(path) or 0)
        write_text(path, str(attempt))
        return attempt


def failed(source: str, reason: str) -> dict[str, Any]:
    return RunReport(source, None, "failed", False, reason=reason).to_dict()

