"""The stage suites, read top to bottom: which stages at which sizes.

- ``smoke``: tiny sizes and a tiny network, no real weights; the harness's own tests.
- ``default``: what the CI check runs on a 2-core CPU: small sizes (GPEN-256, 4 patches,
  a 48x48 photo for SR) so that the whole check stays around two minutes on one thread.
- ``full``: realistic photo and tile sizes, every engine and precision, on CUDA where
  a stage can use it; meant for a GPU machine.

Select with ``--suite`` or ``F2N_BENCH_SET``. A stage's key is ``name[variant]``; the
regression check matches baseline and run by key, so renaming a stage means re-recording.
"""

import os
from functools import partial

from f2n.benchmarks import peers, stages
from f2n.benchmarks.stages import Stage
from f2n.errors import ConfigError

SUITE_ENV = "F2N_BENCH_SET"
DEFAULT_SUITE = "default"
PEER_SIZE = 48  # LR side of the photo that f2n's CPU paths and both peers upscale in the default suite


def _output_mp(height: int, width: int) -> float:
    return 16 * height * width / 1e6


def _sr(kind: str, precision: str, device: str, side: int, network: str = "real") -> Stage:
    return Stage(f"tiled_sr/{kind}-{precision}-{device}", f"{side}x{side}", "sr",
                 partial(stages.tiled_sr, kind, precision, device, side, side, network), device,
                 _output_mp(side, side))


def _handover(kind: str, precision: str, device: str, network: str = "real") -> Stage:
    return Stage(f"handover/{kind}-{precision}-{device}", "rrdbnet-23" if network == "real" else "rrdbnet-tiny",
                 "handover", partial(stages.handover, kind, precision, device, network), device)


def _end_to_end(engine: str, precision: str, device: str, side: int, steps: int, patches: int,
                prior_size: int = 512) -> Stage:
    return Stage(f"end_to_end/{engine}-{precision}-{device}",
                 f"{side}x{side}-{steps}steps-{patches}patches-gpen{prior_size}", "e2e",
                 partial(stages.end_to_end, side, side, steps, patches, engine, precision, device, prior_size),
                 device, _output_mp(side, side))


def _peers(side: int) -> tuple[Stage, ...]:
    size = f"{side}x{side}"
    return (Stage("peer/ncnn-cpu", size, "peer", partial(peers.ncnn_cpu, side, side), "cpu", _output_mp(side, side)),
            Stage("peer/pytorch-eager-cpu", size, "peer", partial(peers.pytorch_eager, side, side), "cpu",
                  _output_mp(side, side)))


def _smoke() -> tuple[Stage, ...]:
    return (
        Stage("decode", "png-64x64", "io", partial(stages.decode, 64, 64, ".png")),
        Stage("masknet", "2x32x32", "face", partial(stages.masknet, 2, 32)),
        Stage("adapt_step/fp32-cpu", "4x8x8-tiny", "adapt", partial(stages.adapt_step, 4, 8, network="tiny")),
        _handover("torch", "fp32", "cpu", network="tiny"),
        _sr("torch", "fp32", "cpu", 32, network="tiny"),
    )


def _default() -> tuple[Stage, ...]:
    return (
        Stage("decode", "jpeg-512x512", "io", partial(stages.decode, 512, 512, ".jpg")),
        Stage("detect", "512x512", "face", partial(stages.detect, 512, 512)),
        Stage("align", "512x512", "face", partial(stages.align, 512, 512)),
        Stage("face_prior/gpen-256-random-cpu", "1x512", "face", partial(stages.face_prior, 1, "gpen-256")),
        Stage("masknet", "16x64x64", "face", partial(stages.masknet, 16, 64)),
        Stage("adapt_step/fp32-cpu", "4x16x16", "adapt", partial(stages.adapt_step, 4, 16)),
        _handover("torch", "fp32", "cpu"),
        _handover("onnx-reinit", "fp32", "cpu"),
        _handover("onnx-inputs", "fp32", "cpu"),
        _handover("openvino-constants", "bf16", "cpu"),  # recompiles: the cost f2n's default CPU path pays per photo
        _handover("openvino-inputs", "bf16", "cpu"),
        _sr("torch", "fp32", "cpu", PEER_SIZE),
        _sr("torch", "bf16", "cpu", PEER_SIZE),
        _sr("onnx-reinit", "fp32", "cpu", PEER_SIZE),
        _sr("openvino-constants", "bf16", "cpu", PEER_SIZE),  # the default CPU path where the CPU has bf16
        _sr("openvino-constants", "fp32", "cpu", PEER_SIZE),  # ... and where it has not
        _sr("openvino-inputs", "bf16", "cpu", PEER_SIZE),
        _sr("ncnn", "fp32", "cpu", PEER_SIZE),  # ncnn's kernels under f2n's tiling: the peer's speed, any θ′
        *_peers(PEER_SIZE),
        Stage("encode", "png-1024x1024", "io", partial(stages.encode, 1024, 1024, ".png")),
        _end_to_end("torch", "fp32", "cpu", 96, steps=1, patches=4, prior_size=256),
    )


def _full() -> tuple[Stage, ...]:
    gpu_sr = [_sr(kind, precision, "cuda", side)
              for side in (256, 512)
              for kind, precision in (("torch", "fp32"), ("torch", "fp16"), ("torch", "bf16"),
                                      ("onnx-reinit", "fp32"), ("onnx-reinit", "fp16"),
                                      ("aoti", "fp32"), ("aoti", "fp16"), ("trt", "fp16"))]
    return (
        Stage("decode", "jpeg-1200x1200", "io", partial(stages.decode, 1200, 1200, ".jpg")),
        Stage("detect", "1200x1200", "face", partial(stages.detect, 1200, 1200)),
        Stage("align", "1200x1200", "face", partial(stages.align, 1200, 1200)),
        *(Stage(f"face_prior/{prior}-random-cuda", "4x512", "face", partial(stages.face_prior, 4, prior, "cuda"))
          for prior in ("gpen-512", "gpen-256", "gfpgan", "codeformer", "restoreformer")),
        Stage("masknet", "64x64x64-cuda", "face", partial(stages.masknet, 64, 64, "cuda")),
        Stage("adapt_step/fp32-cuda", "16x16x16", "adapt", partial(stages.adapt_step, 16, 16, "cuda", "fp32")),
        Stage("adapt_step/bf16-cuda", "16x16x16", "adapt", partial(stages.adapt_step, 16, 16, "cuda", "bf16")),
        Stage("adapt_step/bf16-cuda", "64x16x16", "adapt", partial(stages.adapt_step, 64, 16, "cuda", "bf16")),
        _handover("torch", "fp32", "cuda"),
        _handover("onnx-reinit", "fp32", "cuda"),
        _handover("onnx-inputs", "fp32", "cuda"),
        _handover("aoti", "fp16", "cuda"),
        _handover("trt", "fp16", "cuda"),
        # A new ncnn.Net from θ′ written in memory: in the full suite only, its CPU time (page faults of
        # ~70 MB of fresh weights) swung 144 -> 194 ms between a record at load 1 and checks at load 3
        _handover("ncnn", "fp32", "cpu"),
        *gpu_sr,
        _sr("torch", "fp32", "cpu", 128),
        _sr("onnx-reinit", "fp32", "cpu", 128),
        _sr("openvino-constants", "bf16", "cpu", 128),
        _sr("openvino-constants", "fp32", "cpu", 128),
        _sr("ncnn", "fp32", "cpu", 128),
        *_peers(128),
        Stage("encode", "png-4800x4800", "io", partial(stages.encode, 4800, 4800, ".png")),
        _end_to_end("torch", "fp16", "cuda", 512, steps=5, patches=16),
        _end_to_end("trt", "fp16", "cuda", 512, steps=5, patches=16),
    )


SUITES = {"smoke": _smoke, "default": _default, "full": _full}


def suite_names() -> tuple[str, ...]:
    return tuple(SUITES)


def selected_suite(name: str | None = None) -> str:
    """``name`` if given, else ``$F2N_BENCH_SET``, else ``default``."""
    chosen = name or os.environ.get(SUITE_ENV) or DEFAULT_SUITE
    if chosen not in SUITES:
        raise ConfigError(f"benchmark suite {chosen!r} is unknown; expected one of {', '.join(SUITES)}")
    return chosen


def suite_stages(name: str | None = None) -> tuple[Stage, ...]:
    return SUITES[selected_suite(name)]()
