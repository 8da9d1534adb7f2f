"""Build and load the f2n C++/CUDA extension, lazily and only when asked.

The compiled library lives in a cache directory keyed by the torch version, the
CUDA flag with the GPU architectures it was compiled for (``$TORCH_CUDA_ARCH_LIST``,
else the visible GPUs': a library built on one GPU model has no kernels for another)
and a hash of the sources, under ``$F2N_HOME/cpp_ext`` unless a
directory is passed. Nothing here runs at import.
"""

import hashlib
import logging
import os
import shutil
import sys
from pathlib import Path

import torch

from f2n.errors import EngineUnavailableError
from f2n.fileio import f2n_home

log = logging.getLogger(__name__)

_SOURCE_DIR = Path(__file__).resolve().parent
_CPU_SOURCES = ("rrdb_ops.cpp",)
_CUDA_SOURCES = ("rrdb_cuda.cu",)
_HEADERS = ("rrdb_ops.h",)
BUILD_HINT = "build it with `python -m f2n.cpp_ext build` (needs a C++ compiler and ninja; nvcc for CUDA)"

# The one library loaded into this process: a TORCH_LIBRARY namespace can be
# registered only once per process, so a second build cannot replace it.
_loaded: dict[str, object] = {}


def _source_hash(cuda: bool) -> str:
    digest = hashlib.sha256()
    for name in sorted(_CPU_SOURCES + _HEADERS + (_CUDA_SOURCES if cuda else ())):
        digest.update(name.encode())
        digest.update((_SOURCE_DIR / name).read_bytes())
    return digest.hexdigest()[:12]


def library_name(cuda: bool) -> str:
    return f"f2n_rrdb_{'cuda' if cuda else 'cpu'}_{_source_hash(cuda)}"


def cuda_arch_tag(arch_list: str | None, capabilities: list[tuple[int, int]]) -> str:
    """The GPU architectures a CUDA build targets, as a folder-name part: those of
    ``TORCH_CUDA_ARCH_LIST`` (what torch's builder compiles for when it is set), else the
    compute capabilities of the visible GPUs (what it compiles for then)."""
    if arch_list and arch_list.strip():
        archs = sorted({part.replace(".", "").replace("+PTX", "ptx") for part in arch_list.replace(";", " ").split()})
    else:
        archs = sorted({f"{major}{minor}" for major, minor in capabilities})
    return "sm" + "-".join(archs) if archs else "sm-none"


def default_build_dir(cuda: bool) -> Path:
    """``$F2N_HOME/cpp_ext/<torch>-<py>-<cpu|cudaXY-smNN>-<source hash>``."""
    if cuda:
        capabilities = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        flavour = f"cuda{torch.version.cuda}-{cuda_arch_tag(os.environ.get('TORCH_CUDA_ARCH_LIST'), capabilities)}"
    else:
        flavour = "cpu"
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    return f2n_home() / "cpp_ext" / f"torch{torch.__version__}-{py}-{flavour}-{_source_hash(cuda)}"


def _wants_cuda(cuda: bool | None) -> bool:
    if cuda is not None:
        return cuda
    return torch.version.cuda is not None and torch.cuda.is_available()


def is_loaded() -> bool:
    return "path" in _loaded


def loaded_with_cuda() -> bool:
    return bool(_loaded.get("cuda", False))


def _check_toolchain(cuda: bool) -> None:
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise EngineUnavailableError(f"C++ compiler {compiler!r} not found; install g++ (or set $CXX), then {BUILD_HINT}")
    if not cpp_extension.is_ninja_available():
        raise EngineUnavailableError(f"ninja not found; `pip install ninja`, then {BUILD_HINT}")
    if cuda:
        nvcc = Path(cpp_extension.CUDA_HOME or "/nonexistent") / "bin" / "nvcc"
        if torch.version.cuda is None or not nvcc.exists():
            raise EngineUnavailableError(
                f"CUDA build needs a CUDA torch and nvcc (torch CUDA {torch.version.cuda}, nvcc at {nvcc} "
                f"{'found' if nvcc.exists() else 'missing'}); set $CUDA_HOME or build with --no-cuda"
            )


def _compile(name: str, build_dir: Path, cuda: bool, verbose: bool) -> Path:
    from torch.utils import cpp_extension

    _check_toolchain(cuda)
    build_dir.mkdir(parents=True, exist_ok=True)
    sources = [str(_SOURCE_DIR / s) for s in _CPU_SOURCES + (_CUDA_SOURCES if cuda else ())]
    try:
        path = cpp_extension.load(
            name=name,
            sources=sources,
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3"],
            build_directory=str(build_dir),
            with_cuda=cuda,
            is_python_module=False,
            verbose=verbose,
        )
    except (RuntimeError, OSError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineUnavailableError(
            f"building f2n.cpp_ext in {build_dir} failed ({first}); rerun `python -m f2n.cpp_ext build --verbose` for the compiler output"
        ) from exc
    return Path(path)


def load_library(build: bool = False, build_dir: Path | None = None, cuda: bool | None = None,
                 verbose: bool = False) -> Path:
    """Load the fused RRDB operators (``torch.ops.f2n.rrdb``) and return the library path
    (:func:`f2n.cpp_ext.load` also registers them into RRDBNet).

    ``build=False`` only loads a library built earlier; ``build=True`` compiles it
    first when the cache has none (a few tens of seconds for CPU, minutes with
    CUDA). ``cuda=None`` builds the CUDA kernels when torch sees a GPU. Raises
    EngineUnavailableError, with how to build, when no library can be loaded.
    """
    cuda = _wants_cuda(cuda)
    if is_loaded():
        if cuda and not loaded_with_cuda():
            raise EngineUnavailableError(
                f"a CPU-only f2n.cpp_ext is already loaded in this process ({_loaded['path']}); "
                "load(cuda=True) in a fresh process"
            )
        return Path(str(_loaded["path"]))
    name = library_name(cuda)
    build_dir = Path(build_dir) if build_dir is not None else default_build_dir(cuda)
    library = build_dir / f"{name}.so"
    if build:
        library = _compile(name, build_dir, cuda, verbose)
    elif library.exists():
        torch.ops.load_library(str(library))
    else:
        raise EngineUnavailableError(f"f2n.cpp_ext is not built for torch {torch.__version__} (no {library}); {BUILD_HINT}")

    from f2n.cpp_ext import ops  # registers the autograd formula and the fake kernel

    ops.register_python_parts()
    _loaded.update(path=library, cuda=cuda)
    log.info("loaded f2n.cpp_ext from %s", library)
    return library
