"""f2n-eval: degraded test sets, the methods compared on them, and their metrics."""

from f2n.eval.metrics import (
    compute_metrics,
    face_box_mask,
    metrics_table,
    niqe_y,
    psnr_y,
    rgb_to_y,
    ssim_y,
)
from f2n.eval.report import write_report
from f2n.eval.run import EvalConfig, EvalResult, PhotoResult, evaluate_set
from f2n.eval.testset import EvalPair, build_test_set, load_test_set

__all__ = [
    "EvalConfig",
    "EvalPair",
    "EvalResult",
    "PhotoResult",
    "build_test_set",
    "compute_metrics",
    "evaluate_set",
    "face_box_mask",
    "load_test_set",
    "metrics_table",
    "niqe_y",
    "psnr_y",
    "rgb_to_y",
    "ssim_y",
    "write_report",
]
