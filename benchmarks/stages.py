"""One benchmark stage = a setup that builds inputs, networks and engines (untimed)
and returns the call that is timed. The stage suites (:mod:`f2n.benchmarks.suites`)
pick sizes; pytest-benchmark files and the regression check both time these calls.

Stages need other parts of f2n (and sometimes a GPU, TensorRT or real weights);
where a part is not there, ``setup`` raises :class:`StageUnavailable` with the reason.
"""

import functools
import importlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

TimedCall = Callable[[], object]


class StageUnavailable(Exception):
    """This stage cannot run here; the message says why (it is reported, not raised to users)."""


@dataclass(frozen=True)
class Stage:
    name: str  # what is measured, e.g. "tiled_sr/onnx-fp32"
    variant: str  # the size it is measured at, e.g. "96x96"
    group: str  # io, face, adapt, handover, sr, e2e or peer: how the report groups stages
    setup: Callable[[], TimedCall]
    device: str = "cpu"  # where the stage computes: cpu or cuda
    output_megapixels: float = 0.0  # output size of an SR stage, for seconds per megapixel

    @property
    def key(self) -> str:
        return f"{self.name}[{self.variant}]"

    def matches(self, selector: str) -> bool:
        """A selector names a stage by key, by name, or by family (``tiled_sr`` for every engine)."""
        return selector in (self.key, self.name, self.name.split("/")[0])


def require_module(module: str):
    """Import a stage's f2n module; a module that is absent makes the stage unavailable."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise StageUnavailable(f"{module} cannot be imported ({error})") from None


def threads() -> int:
    """The thread count every library in a stage gets: torch's, which ``run_suite`` sets."""
    return torch.get_num_threads()


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise StageUnavailable("no CUDA device")
    return torch.device(name)


def _synchronized(call: TimedCall, device: torch.device) -> TimedCall:
    """GPU work is asynchronous: the timed call must wait for it."""
    if device.type != "cuda":
        return call

    def run() -> object:
        result = call()
        torch.cuda.synchronize(device)
        return result

    return run


@functools.lru_cache(maxsize=1)
def _astronaut() -> np.ndarray:
    import skimage.data  # imported here: loading scikit-image costs ~1 s

    return skimage.data.astronaut()


def photo_rgb(height: int, width: int) -> np.ndarray:
    """A real photo with a face (scikit-image's astronaut, in the package, so no shared
    data is needed) resized to (height, width): float32 RGB in [0, 1]."""
    resized = cv2.resize(_astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    return resized.astype(np.float32) / 255.0


# ---- decode / encode -------------------------------------------------------------

def decode(height: int, width: int, suffix: str) -> TimedCall:
    images = require_module("f2n.runtime.images")
    folder = tempfile.TemporaryDirectory(prefix="f2n-bench-")
    path = Path(folder.name) / f"photo{suffix}"
    images.write_image(path, photo_rgb(height, width))

    def run() -> object:
        _ = folder  # keeps the temporary folder alive as long as the call
        return images.read_image(path)

    return run


def encode(height: int, width: int, suffix: str) -> TimedCall:
    images = require_module("f2n.runtime.images")
    folder = tempfile.TemporaryDirectory(prefix="f2n-bench-")
    path = Path(folder.name) / f"out{suffix}"
    rgb = photo_rgb(height, width)

    def run() -> None:
        _ = folder  # keeps the temporary folder alive as long as the call
        images.write_image(path, rgb)

    return run


# ---- shared inputs -------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def sr_loaded():
    """Real-ESRGAN x4plus as f2n.weights loads it (converted from the ncnn package on first use)."""
    return require_module("f2n.weights").load_sr_network()


@functools.lru_cache(maxsize=1)
def tiny_loaded():
    """A seeded 1-block RRDBNet for smoke runs, loaded as a weight file is."""
    nets, weights = require_module("f2n.nets"), require_module("f2n.weights")
    torch.manual_seed(0)
    model = nets.RRDBNet(num_block=1, num_feat=8, num_grow_ch=4).eval()
    with tempfile.TemporaryDirectory(prefix="f2n-bench-") as folder:
        path = Path(folder) / "tiny.safetensors"
        require_module("f2n.weights.checkpoint").save_safetensors_atomic(path, model.state_dict(), {})
        return weights.load_sr_network(path)


def sr_model(network: str) -> torch.nn.Module:
    """``real``: Real-ESRGAN x4plus; ``tiny``: a seeded 1-block RRDBNet for smoke runs."""
    return (sr_loaded() if network == "real" else tiny_loaded()).model.eval()


def perturbed_weights(model: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """A photo's θ_n stand-in: the base weights plus small noise (values matter, names and shapes must fit)."""
    generator = torch.Generator().manual_seed(seed)
    return {name: value.detach() + 1e-4 * torch.randn(value.shape, generator=generator)
            for name, value in model.state_dict().items()}


def _face_landmarks(rgb: np.ndarray) -> np.ndarray:
    detections = require_module("f2n.runtime.face.detect").RetinaFaceDetector(threads=threads())(rgb)
    if len(detections) == 0:
        raise RuntimeError("the benchmark photo has no detected face")
    return detections.landmarks[:1]


# ---- face stage ------------------------------------------------------------------------

def detect(height: int, width: int) -> TimedCall:
    detector = require_module("f2n.runtime.face.detect").RetinaFaceDetector(threads=threads())
    rgb = photo_rgb(height, width)
    return lambda: detector(rgb)


def align(height: int, width: int, face_size: int = 512) -> TimedCall:
    """Similarity fit and warp of the photo's face onto the aligned template."""
    face_align = require_module("f2n.runtime.face.align")
    rgb = photo_rgb(height, width)
    landmarks = _face_landmarks(rgb)
    template = face_align.face_template(face_size)

    def run() -> list[np.ndarray]:
        return [face_align.warp_face(rgb, face_align.estimate_affine(points, template), face_size)
                for points in landmarks]

    return run


def random_face_prior(architecture: str, device: torch.device):
    """The face prior ``architecture`` (gpen-512, gpen-256, gfpgan, codeformer, restoreformer)
    with the released files' hyperparameters and RANDOM (seeded) weights, called with its
    official conventions: the real weights are not available here, and the time does not
    depend on the values. Parameter counts: GPEN-BFR-512 71.0 M, GPEN-BFR-256 18.9 M."""
    conventions = require_module("f2n.runtime.face.prior_conventions")
    torch_prior = require_module("f2n.runtime.face.torch_prior")
    torch.manual_seed(0)
    if architecture.startswith("gpen-"):
        gpen = require_module("f2n.nets.gpen")
        official = require_module("f2n.weights.gpen").GPEN_BFR[int(architecture[len("gpen-"):])]
        model, kind = gpen.GPEN(**official), "gpen"
    else:
        try:
            model = require_module("f2n.weights.face_restorers").network_class(architecture)()
        except ImportError as error:
            raise StageUnavailable(f"{architecture} needs spandrel ({error})") from None
        model, kind = model.eval(), architecture
    rules = conventions.CONVENTIONS[kind]
    defaults = {key: default for key, (default, _, _) in rules.options.items()}
    return torch_prior.TorchFacePrior(model, rules, name=architecture, options=defaults, provenance={}, device=device)


def face_prior(faces: int, architecture: str = "gpen-512", device: str = "cpu") -> TimedCall:
    """``faces`` aligned 512x512 faces through the prior ``architecture`` (random weights, see random_face_prior)."""
    where = _device(device)
    prior = random_face_prior(architecture, where)
    aligned = np.stack([cv2.resize(photo_rgb(512, 512)[:256, 128:384], (512, 512))] * faces)
    affines = np.tile(np.eye(2, 3, dtype=np.float64), (faces, 1, 1))

    def run() -> np.ndarray:
        return prior.restore(aligned, affines)

    return _synchronized(run, where)


def masknet(patches: int, size: int, device: str = "cpu") -> TimedCall:
    """MaskNet weighing ``patches`` (LQ, restored) pairs of ``size`` x4 pixels, as the face stage does."""
    face_stage = require_module("f2n.runtime.face.stage")
    where = _device(device)
    network = require_module("f2n.nets").MaskNet().to(where).eval()
    generator = torch.Generator().manual_seed(0)
    lq = torch.rand(patches, 3, size // 4, size // 4, generator=generator)
    target = torch.rand(patches, 3, size, size, generator=generator)
    valid = torch.ones(patches, 1, size, size)
    return _synchronized(lambda: face_stage.patch_weights(lq, target, valid, network), where)


# ---- adaptation ------------------------------------------------------------------------

def adapt_step(patches: int, lq_size: int, device: str = "cpu", precision: str = "fp32",
               network: str = "real") -> TimedCall:
    """One inner-loop gradient step (loss, backward, SGD update) on a batch of face patches."""
    adapt = require_module("f2n.runtime.adapt")
    types = require_module("f2n.runtime.types")
    _device(device)
    generator = torch.Generator().manual_seed(0)
    lq = torch.rand(patches, 3, lq_size, lq_size, generator=generator)
    target = torch.rand(patches, 3, 4 * lq_size, 4 * lq_size, generator=generator)
    batch = types.PatchBatch(lq, target, torch.ones(patches, 1, 4 * lq_size, 4 * lq_size))
    config = adapt.AdaptConfig(steps=1_000_000, device=device, precision=precision)  # one step per call
    steps = adapt.iter_adaptation(sr_model(network), batch, config)
    return lambda: next(steps)  # the step synchronises: it reads the loss


# ---- engines: weight hand-over and tiled SR ----------------------------------------------

def make_engine(kind: str, precision: str, device: str, network: str = "real"):
    """An SR engine: ``torch``, ``onnx-reinit`` / ``onnx-inputs`` (the two ONNX Runtime weight
    replacements), ``openvino-constants`` / ``openvino-inputs`` (the two OpenVINO ones), ``ncnn``
    (its CPU kernels unless ``$F2N_NCNN_VULKAN=1``), ``aoti`` or ``trt``, from f2n's one engine
    factory (as every command builds them)."""
    _device(device)
    engines = require_module("f2n.export.engines")
    tiling = require_module("f2n.runtime.tiling")
    if kind != "torch" and network != "real":
        raise ValueError(f"engine {kind!r} is benchmarked with the real network only, got {network!r}")
    loaded = sr_loaded() if network == "real" else tiny_loaded()
    name, _, replacement = kind.partition("-")
    options = {"threads": threads(), **({"replacement": replacement} if replacement else {})}
    return engines.make_engine(name, loaded, device=device, precision=precision, tile=tiling.DEFAULT_TILE, **options)


def handover(kind: str, precision: str = "fp32", device: str = "cpu", network: str = "real") -> TimedCall:
    """``engine.set_weights(θ_n)``: how long a photo's adapted weights take to reach the engine."""
    engine = make_engine(kind, precision, device, network)
    weights = perturbed_weights(sr_model(network))
    return _synchronized(lambda: engine.set_weights(weights), torch.device(device))


def tiled_sr(kind: str, precision: str, device: str, height: int, width: int, network: str = "real") -> TimedCall:
    """``tiled_upscale`` of an (height, width) photo with the default tile and overlap."""
    tiling = require_module("f2n.runtime.tiling")
    engine = make_engine(kind, precision, device, network)
    rgb = photo_rgb(height, width)
    return lambda: tiling.tiled_upscale(engine, rgb)  # host arrays out: the GPU work is finished


# ---- end to end ------------------------------------------------------------------------

def end_to_end(height: int, width: int, steps: int, patches: int, engine: str = "torch", precision: str = "fp32",
               device: str = "cpu", prior_size: int = 512) -> TimedCall:
    """``AdaptAndRun(photo, output)`` as f2n-adapt-and-run builds it: decode, face stage (GPEN with
    random weights), ``steps`` adaptation steps on ``patches`` patches per face, weight hand-over,
    tiles, encode. The call returns the run report, whose per-step timings become the stage's
    breakdown (the waterfall)."""
    build = require_module("f2n.runtime.build")
    images = require_module("f2n.runtime.images")
    where = _device(device)
    prior = random_face_prior(f"gpen-{prior_size}", where)
    folder = tempfile.TemporaryDirectory(prefix="f2n-bench-")
    source, output = Path(folder.name) / "photo.png", Path(folder.name) / "photo_x4.png"
    images.write_image(source, photo_rgb(height, width))
    detector = require_module("f2n.runtime.face.detect").RetinaFaceDetector(threads=threads())
    run_pipeline = build.build_pipeline(
        sr_loaded(), engine=make_engine(engine, precision, device), device=device, precision="fp32",
        requested={"steps": steps, "patches_per_face": patches}, prior=prior, detector=detector)

    def run() -> object:
        _ = folder
        report = run_pipeline(source, output)
        if not report.adapted:  # a benchmark that silently skipped adaptation would measure too little
            raise RuntimeError(f"the benchmark photo was not adapted: {report.reason}")
        return report

    return run
