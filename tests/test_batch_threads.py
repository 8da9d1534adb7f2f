"""Issue 26: an f2n-batch worker runs on the CPUs Ray gave it. It limited torch's threads only;
OpenVINO (the CPU engine auto picks) and ONNX Runtime's face detector took every core in every
worker, so N workers on an N-core node ran N² threads."""

from pathlib import Path

from f2n.runtime.batch.build import PipelineOptions
from f2n.runtime.batch.worker import PhotoWorker


def test_a_worker_gives_its_threads_to_openvino_and_the_detector(tmp_path: Path, tiny_weights: Path) -> None:
    threads = 1
    options = PipelineOptions(checkpoint=str(tiny_weights), engine="openvino", device="cpu", precision="fp32",
                              prior="numpy:copy")
    worker = PhotoWorker(options, tmp_path / "attempts", max_attempts=3, threads=threads)
    assert worker.setup_error is None, worker.setup_error
    compiled = worker.pipeline.engine._compile()  # what each photo's model is compiled with
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == threads
    session = worker.pipeline.method.detector._network._session
    assert session.get_session_options().intra_op_num_threads == threads
