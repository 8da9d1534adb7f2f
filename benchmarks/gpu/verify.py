"""GPU figures of benchmarks/gpu/verify.sh, one part at a time, each under the time left.

Parts (``--parts``; the default order puts what the issue must see verified first):
  env        torch/CUDA/GPU, CUDA toolkit, ONNX Runtime providers, TensorRT
  adapt      one adaptation step: compiled bf16 (first step = compile) and eager fp32,
             then 2 and 5 faces' patches through the same compiled step (no recompile)
  sr         512² LR -> 2048² tiled ×4 per engine (torch eager fp16 = the baseline,
             torch compiled fp16, AOTInductor fp16 on CUDA, ONNX Runtime CUDA fp16,
             TensorRT fp16 where installed), with each engine's max abs difference
  handover   set_weights(θ_n) per engine built by ``sr``
  gpen       GPEN-BFR-512 architecture (random weights) on one 512² face, fp16 autocast
  e2e        one face chained: detect -> GPEN fp16 -> 20 compiled bf16 steps ->
             hand-over -> tiled SR 512² (compiled torch fp16)
  fused      f2n.cpp_ext fused RRDB block, NCHW vs channels_last input (if built)
  tests      the GPU tests (pytest, in a subprocess under the time left)

Every part records its figures or its error in ``<out>/<device>.json`` and the table
``<out>/<device>.md`` is rewritten after each part, so a run cut short still leaves
what it measured. Random weights everywhere (speed does not depend on their values;
the real ones cannot be downloaded on a machine without a network). ``--dry-run``
runs every part's logic on the CPU with tiny networks and sizes.
"""

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class Sizes:
    lr: int  # LR photo side
    tile: int
    overlap: int
    net: dict  # RRDBNet kwargs
    patch: int  # LQ patch side
    patches: int  # one face's patch count
    gpen: dict  # GPEN kwargs
    steps: int  # adaptation steps end to end
    device: str


SR_ENGINES = ("torch eager", "torch compiled", "AOTInductor", "ONNX Runtime CUDA", "TensorRT")
FULL = Sizes(512, 192, 32, dict(num_block=23, num_feat=64, num_grow_ch=32), 16, 16, {}, 20, "cuda")
DRY = Sizes(40, 16, 4, dict(num_block=1, num_feat=8, num_grow_ch=4), 4, 16, dict(size=64, style_dim=32, n_mlp=2, narrow=0.125), 2, "cpu")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def seconds(fn: Callable[[], object], rounds: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn`` (CUDA synchronised) after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Report:
    """The JSON state and its markdown rendering; written after every part."""

    def __init__(self, out: Path, device: str, deadline: float) -> None:
        self.json_path, self.md_path = out / f"{device}.json", out / f"{device}.md"
        self.device, self.deadline = device, deadline
        out.mkdir(parents=True, exist_ok=True)
        self.state = json.loads(self.json_path.read_text()) if self.json_path.is_file() else {"device": device, "parts": {}}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, part: Callable[[dict], None], needs_seconds: float) -> None:
        record: dict = {"rows": []}
        if self.left() < needs_seconds:
            record["status"] = f"skipped: {self.left():.0f} s left, needs ~{needs_seconds:.0f} s"
        else:
            start = time.monotonic()
            try:
                part(record)
                record["status"] = "ok"
            except Exception as error:  # a failed part is recorded, the next one still runs
                record["status"] = f"failed: {type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
                record["traceback"] = traceback.format_exc(limit=6)
            record["seconds"] = round(time.monotonic() - start, 1)
        print(f"[verify] {name}: {record['status']}", flush=True)
        self.state["parts"][name] = record
        self.write()

    def write(self) -> None:
        self.json_path.write_text(json.dumps(self.state, indent=1, default=str))
        lines = [f"# GPU verification on {self.device}", "",
                 "Written by `bash benchmarks/gpu/verify.sh` (benchmarks/gpu/verify.py); random weights of the real",
                 "architectures; wall time, CUDA synchronised, medians of 3 after a warm-up unless a row says otherwise.", ""]
        for name, record in self.state["parts"].items():
            lines += [f"## {name} ({record.get('status')}, {record.get('seconds', 0)} s)", ""]
            if record["rows"]:
                lines += ["| what | value | note |", "| --- | ---: | --- |"]
                lines += [f"| {r[0]} | {r[1]} | {r[2] if len(r) > 2 else ''} |" for r in record["rows"]]
                lines.append("")
            if "traceback" in record:
                lines += ["```", record["traceback"].strip(), "```", ""]
        self.md_path.write_text("\n".join(lines))


class Bench:
    """What the parts share: sizes, the SR network, θ_n, the photo, built engines."""

    def __init__(self, sizes: Sizes) -> None:
        from f2n.nets.rrdbnet import RRDBNet

        self.sizes = sizes
        torch.manual_seed(0)
        self.model = RRDBNet(**sizes.net).eval()
        with torch.no_grad():  # ESRGAN's init scale (kaiming × 0.1): activations stay in fp16 range
            for parameter in self.model.parameters():
                parameter.mul_(0.1)
        self.theta = {k: v + 1e-3 * torch.randn_like(v) for k, v in self.model.state_dict().items()}
        self.photo = np.random.default_rng(0).random((sizes.lr, sizes.lr, 3), dtype=np.float32)
        self.engines: dict[str, object] = {}  # SR engines built by the sr part
        self.restore_face: Callable[[], object] | None = None  # GPEN on one face, from the gpen part
        self.folder = Path(tempfile.mkdtemp(prefix="f2n-verify-"))

    def upscale(self, engine: object) -> np.ndarray:
        from f2n.runtime.tiling import tiled_upscale

        return tiled_upscale(engine, self.photo, tile=self.sizes.tile, overlap=self.sizes.overlap)


def part_env(record: dict) -> None:
    from torch.utils import cpp_extension

    from f2n.export.aoti import missing_cuda_toolkit

    rows = record["rows"]
    rows.append(("python / torch / CUDA", f"{platform.python_version()} / {torch.__version__} / {torch.version.cuda}"))
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        rows.append(("GPU", f"{torch.cuda.get_device_name()} sm{major}{minor}", f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"))
    rows.append(("CUDA toolkit for AOTInductor", missing_cuda_toolkit(cpp_extension.CUDA_HOME) or f"found at {cpp_extension.CUDA_HOME}"))
    try:
        import onnxruntime

        rows.append(("ONNX Runtime providers", f"{onnxruntime.__version__}: {', '.join(onnxruntime.get_available_providers())}"))
    except ImportError:
        rows.append(("ONNX Runtime", "not installed"))
    try:
        import tensorrt

        rows.append(("TensorRT", tensorrt.__version__))
    except ImportError:
        rows.append(("TensorRT", "not installed: its tests skip with that reason"))


def part_sr(bench: Bench, report: Report, engines: set[str]) -> Callable[[dict], None]:
    def run(record: dict) -> None:
        from f2n.cpu_features import native_bf16
        from f2n.export.aoti import AotiEngine, compile_package
        from f2n.export.fp32_mode import ieee_fp32
        from f2n.export.torch_engine import TorchEngine

        sizes, rows = bench.sizes, record["rows"]
        # The CPU has no fp16 torch engine, and refuses bf16 where it would be emulated
        low = "fp16" if sizes.device == "cuda" else "bf16" if native_bf16() else "fp32"
        title = f"{sizes.lr}² LR -> {4 * sizes.lr}² (tile {sizes.tile}, overlap {sizes.overlap}), {low}"

        def aoti() -> object:
            package = compile_package(bench.model, bench.folder / "sr.pt2", device=sizes.device, precision=low)
            return AotiEngine(package, bench.model.state_dict(), device=sizes.device, precision=low)

        # AOTInductor before torch.compile: it is the one the issue needs verified on CUDA
        builders: list[tuple[str, Callable[[], object], float]] = [
            ("torch eager", lambda: TorchEngine(bench.model, device=sizes.device, precision=low, compile=False), 5),
            ("AOTInductor", aoti, 120),
            ("torch compiled", lambda: TorchEngine(bench.model, device=sizes.device, precision=low, compile=sizes.device == "cuda"), 60),
        ]
        if sizes.device == "cuda" and _has_ort_cuda():
            from f2n.export.onnx_export import export_onnx
            from f2n.export.ort_engine import OrtEngine

            builders.append(("ONNX Runtime CUDA", lambda: OrtEngine(export_onnx(bench.model, bench.folder / "sr.onnx", precision="fp16", simplify=False),
                                                                    bench.model.state_dict(), device="cuda"), 60))
        if sizes.device == "cuda" and _has_tensorrt():
            from f2n.export.onnx_export import export_onnx
            from f2n.export.trt_config import tile_profile
            from f2n.export.trt_engine import load_trt_engine

            builders.append(("TensorRT", lambda: load_trt_engine(export_onnx(bench.model, bench.folder / "sr32.onnx", simplify=False), bench.model.state_dict(),
                                                                 precision="fp16", profile=tile_profile(sizes.tile), cache_dir=bench.folder), 180))
        baseline, reference, failed = None, None, []
        for name, build, needs in [b for b in builders if b[0] in engines]:
            if report.left() < needs:
                rows.append((name, "skipped", f"{report.left():.0f} s left, needs ~{needs} s"))
                continue
            try:
                start = time.perf_counter()
                engine = build()
                built = time.perf_counter() - start
                start = time.perf_counter()
                result = bench.upscale(engine)  # first run: torch.compile compiles here
                first = time.perf_counter() - start
                steady = seconds(lambda: bench.upscale(engine), rounds=3, warmup=0)
            except Exception as error:  # the next engine still runs; the part is marked failed at the end
                rows.append((name, "failed", f"{type(error).__name__}: {str(error).strip().splitlines()[0][:160] if str(error).strip() else ''}"))
                failed.append(name)
                continue
            bench.engines[name] = engine
            if baseline is None:
                baseline, reference = steady, result
            difference = float(np.abs(result - reference).max())
            rows.append((f"{title}: {name}", f"{steady * 1e3:.0f} ms",
                         f"{baseline / steady:.2f}× eager; build {built:.1f} s, first run {first:.1f} s; max abs diff vs eager {difference:.2g}"))
        if reference is not None:
            with ieee_fp32():  # the fp32 reference of this check, in IEEE fp32
                fp32 = bench.upscale(TorchEngine(bench.model, device=sizes.device, precision="fp32", compile=False))
            rows.append((f"{title}: first engine ({low}) vs eager fp32 (IEEE)", f"{float(np.abs(reference - fp32).max()):.2g}", "max abs difference"))
        if failed:
            raise RuntimeError(f"engines failed: {', '.join(failed)} (rows above)")

    return run


GPU_TESTS = (
    "tests/test_cpp_ext.py", "tests/test_engine_gpu_paths.py", "tests/test_export_trt.py",
    "tests/test_adapt.py::test_compiled_bf16_on_cuda_matches_eager_and_does_not_recompile",
    "tests/test_adapt.py::test_compiled_step_compiles_once_for_every_face_count",
)
DRY_TESTS = ("tests/test_engine_gpu_paths.py",)


def part_tests(bench: Bench, report: Report) -> Callable[[dict], None]:
    def run(record: dict) -> None:
        import subprocess

        selection = GPU_TESTS if bench.sizes.device == "cuda" else DRY_TESTS
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", *selection]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=max(report.left(), 1.0))
        except subprocess.TimeoutExpired as timeout:
            tail = (timeout.stdout or b"")[-400:] if isinstance(timeout.stdout, bytes) else (timeout.stdout or "")[-400:]
            raise RuntimeError(f"the GPU tests ran out of time after {timeout.timeout:.0f} s: {tail!r}") from None
        lines = done.stdout.strip().splitlines()
        for line in lines:
            if line.startswith(("FAILED", "ERROR", "SKIPPED")):
                record["rows"].append(("pytest", line.split(" ", 1)[0], line.split(" ", 1)[1][:200].replace("|", "/")))
        record["rows"].append(("pytest " + " ".join(selection), lines[-1] if lines else f"exit {done.returncode}", f"exit {done.returncode}"))
        if done.returncode != 0:
            raise RuntimeError(lines[-1] if lines else f"pytest exit {done.returncode}: {done.stderr.strip()[-200:]}")

    return run


def part_handover(bench: Bench) -> Callable[[dict], None]:
    def run(record: dict) -> None:
        if not bench.engines:
            raise RuntimeError("no engine was built by the sr part")
        for name, engine in bench.engines.items():
            swap = seconds(lambda: engine.set_weights(bench.theta), rounds=5)
            record["rows"].append((f"set_weights(θ_n): {name}", f"{swap * 1e3:.1f} ms", f"{len(bench.theta)} tensors"))

    return run


def patches(sizes: Sizes, faces: int = 1):
    from f2n.runtime.types import PatchBatch

    g = torch.Generator().manual_seed(faces)
    n, p = sizes.patches * faces, sizes.patch
    return PatchBatch(torch.rand(n, 3, p, p, generator=g), torch.rand(n, 3, 4 * p, 4 * p, generator=g), torch.ones(n, 1, 4 * p, 4 * p))


def part_adapt(bench: Bench) -> Callable[[dict], None]:
    def run(record: dict) -> None:
        from f2n.runtime.adapt import AdaptConfig, iter_adaptation

        sizes = bench.sizes
        model = bench.model.to(sizes.device)
        for label, config in [
            ("compiled bf16", AdaptConfig(steps=6, lr=1e-4, device=sizes.device, precision="bf16", compile=sizes.device == "cuda")),
            ("eager fp32", AdaptConfig(steps=4, lr=1e-4, device=sizes.device, precision="fp32", compile=False)),
        ]:
            times = [step.seconds for step in iter_adaptation(model, patches(sizes), config)]
            record["rows"].append((f"one adaptation step, {sizes.patches} patches of {sizes.patch}² ({label})", f"{statistics.median(times[1:]) * 1e3:.0f} ms",
                                   f"first step {times[0]:.1f} s (compile when compiled), median of {len(times) - 1} after"))
        # a second and a fifth face count after the first: the compiled step must not recompile
        from torch._dynamo.utils import counters

        config = AdaptConfig(steps=2, lr=1e-4, device=sizes.device, precision="bf16", compile=sizes.device == "cuda")
        for faces in (2, 5):
            graphs = counters["stats"]["unique_graphs"]
            times = [step.seconds for step in iter_adaptation(model, patches(sizes, faces), config)]
            new = counters["stats"]["unique_graphs"] - graphs
            record["rows"].append((f"compiled bf16 step, {faces} faces ({faces * sizes.patches} patches)", f"{times[-1] * 1e3:.0f} ms",
                                   f"first step {times[0]:.2f} s; {new} graph(s) compiled for this face count (expected 0)"))
            if new and config.compiled:
                raise RuntimeError(f"{faces} faces recompiled the adaptation step ({new} new graphs)")

    return run


def part_gpen(bench: Bench) -> Callable[[dict], None]:
    def run(record: dict) -> None:
        from f2n.nets.gpen import GPEN

        sizes = bench.sizes
        torch.manual_seed(0)
        gpen = GPEN(**sizes.gpen).eval().to(sizes.device)
        face = torch.rand(1, 3, gpen.size, gpen.size, device=sizes.device) * 2 - 1
        dtype = torch.float16 if sizes.device == "cuda" else torch.bfloat16

        def restore() -> torch.Tensor:
            with torch.inference_mode(), torch.autocast(sizes.device, dtype=dtype):
                return gpen(face)

        out = restore()
        out = out[0] if isinstance(out, (tuple, list)) else out
        finite = bool(torch.isfinite(out).all())
        record["rows"].append((f"GPEN {gpen.size}² one face, {str(dtype).removeprefix('torch.')} autocast", f"{seconds(restore) * 1e3:.1f} ms", f"output finite: {finite}"))
        if not finite:
            raise RuntimeError("GPEN produced NaN/Inf")
        bench.restore_face = restore

    return run


def part_e2e(bench: Bench) -> Callable[[dict], None]:
    def run(record: dict) -> None:
        from f2n.runtime.adapt import AdaptConfig, adapt
        from f2n.runtime.face.detect import RetinaFaceDetector

        sizes = bench.sizes
        engine = bench.engines.get("torch compiled") or bench.engines.get("torch eager")
        restore = bench.restore_face
        if engine is None or restore is None:
            raise RuntimeError("needs the sr and gpen parts")
        detector = RetinaFaceDetector()
        photo_u8 = (bench.photo * 255).astype(np.uint8)
        config = AdaptConfig(steps=sizes.steps, lr=1e-4, device=sizes.device, precision="bf16", compile=sizes.device == "cuda")
        stages: dict[str, float] = {}

        def timed(name: str, fn: Callable[[], object]) -> object:
            start = time.perf_counter()
            value = fn()
            sync()
            stages[name] = time.perf_counter() - start
            return value

        start = time.perf_counter()
        timed("detect", lambda: detector(photo_u8))
        timed("prior", restore)
        result = timed("adapt", lambda: adapt(bench.model, patches(sizes), config))
        timed("hand-over", lambda: engine.set_weights(result.weights))
        timed("tiled SR", lambda: bench.upscale(engine))
        total = time.perf_counter() - start
        detail = ", ".join(f"{name} {value * 1e3:.0f} ms" for name, value in stages.items())
        record["rows"].append((f"end to end, one face, {sizes.steps} steps, {sizes.lr}² -> {4 * sizes.lr}²", f"{total * 1e3:.0f} ms",
                               f"warm (compiled already); {detail}; patches random, mask ones"))

    return run


def part_fused(bench: Bench) -> Callable[[dict], None]:
    def run(record: dict) -> None:
        from f2n import cpp_ext
        from f2n.nets.rrdbnet import RRDB

        built = os.environ.get("F2N_TEST_CPP_EXT_DIR")  # where verify.sh built it
        cpp_ext.load(build_dir=Path(built) if built else None, cuda=bench.sizes.device == "cuda")  # raises with how to build when absent
        nf, gc = bench.sizes.net["num_feat"], bench.sizes.net["num_grow_ch"]
        block = RRDB(nf, gc).to(bench.sizes.device).eval()
        x = torch.rand(1, nf, bench.sizes.tile, bench.sizes.tile, device=bench.sizes.device)
        nchw = {}
        for layout, memory_format in (("NCHW", torch.contiguous_format), ("channels_last (the torch engine's CUDA layout)", torch.channels_last)):
            net, tensor = block.to(memory_format=memory_format), x.contiguous(memory_format=memory_format)
            with torch.inference_mode():
                fused = seconds(lambda: net(tensor), rounds=5)
                out = net(tensor)
            nchw.setdefault("out", out)
            note = f"max abs diff vs NCHW {float((out - nchw['out']).abs().max()):.2g}"
            record["rows"].append((f"fused RRDB block, {nf} feat, {bench.sizes.tile}² tile, weights and input {layout}", f"{fused * 1e3:.2f} ms", note))

    return run


def _has_ort_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seconds", type=float, default=420.0, help="time budget of this invocation")
    parser.add_argument("--parts", default="env,adapt,sr,handover,gpen,e2e")
    parser.add_argument("--engines", default=",".join(SR_ENGINES), help="SR engines of the sr part")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: exercises the logic, measures nothing")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("verify.py: no CUDA device; use --dry-run on the CPU", file=sys.stderr)
        return 2
    sizes = DRY if args.dry_run else FULL
    device = "cpu-dry-run" if args.dry_run else slug(torch.cuda.get_device_name())
    report = Report(args.out, device, time.monotonic() + args.seconds)
    bench = Bench(sizes)
    parts = {
        "env": (part_env, 5), "sr": (part_sr(bench, report, set(args.engines.split(","))), 30), "handover": (part_handover(bench), 5),
        "adapt": (part_adapt(bench), 90), "gpen": (part_gpen(bench), 20), "e2e": (part_e2e(bench), 30), "fused": (part_fused(bench), 10),
        "tests": (part_tests(bench, report), 30),
    }
    for name in args.parts.split(","):
        part, needs = parts[name]
        report.run(name, part, needs)
    failed = [name for name, record in report.state["parts"].items() if str(record.get("status", "")).startswith("failed")]
    print(f"[verify] wrote {report.md_path}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
