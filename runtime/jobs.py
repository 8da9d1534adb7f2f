"""Where each photo of an f2n-adapt-and-run call is read from and written to.

Every conflict (a photo given twice, two photos with one output, an output that would
replace its input, an ``--out`` that is neither a folder nor an image name, a folder
that cannot be written) is a ConfigError here, before any photo is processed: not
after minutes of adaptation, and not once per photo of a folder.
"""

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from f2n.errors import ConfigError
from f2n.fileio import remove_stale_temps
from f2n.runtime.images import IMAGE_SUFFIXES, image_files

OUTPUT_SUFFIX = ".png"  # lossless, and the only format that keeps 16 bits and alpha everywhere
WEIGHTS_SUFFIX = ".safetensors"
DEFAULT_OUT_DIR = Path("f2n_out")


@dataclass(frozen=True)
class Job:
    source: Path
    output: Path
    weights_out: Path | None
    debug_dir: Path | None

    @property
    def seed(self) -> int:
        return photo_seed(self.source.name)


def photo_seed(name: str) -> int:
    """A photo's seed (its patch draws) from its file name: the same photo gets the same
    output whichever process, worker or machine runs it (f2n-adapt-and-run and f2n-batch),
    and two photos of one folder do not share their draws."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "little")


def collect_inputs(inputs: tuple[Path, ...]) -> list[Path]:
    """Files as given; folders expanded to their image files (sorted, not recursive)."""
    if not inputs:
        raise ConfigError("no input: expected one or more PHOTO_OR_DIR arguments (or --demo)")
    sources: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise ConfigError(f"no images in folder {path} (expected files ending in {', '.join(IMAGE_SUFFIXES)})")
            sources += found
        else:
            sources.append(path)  # a missing or unreadable file fails on its own, later
    _check_given_once(sources)
    return sources


def plan_jobs(sources: list[Path], out: Path | None, save_weights: Path | None, save_debug: bool) -> list[Job]:
    """One job per photo. ``out``: an image file name (one photo) or a folder; ``save_weights``:
    a .safetensors file name (one photo) or a folder."""
    out_is_file = out is not None and names_a_file(out, "--out", IMAGE_SUFFIXES, len(sources))
    out_dir = (out.parent if out_is_file else out) or DEFAULT_OUT_DIR
    weights_is_file = save_weights is not None and names_a_file(save_weights, "--save-weights", (WEIGHTS_SUFFIX,),
                                                                 len(sources))
    jobs = []
    for source in sources:
        output = out if out_is_file else out_dir / f"{source.stem}{OUTPUT_SUFFIX}"
        weights_out = None
        if save_weights is not None:
            weights_out = save_weights if weights_is_file else save_weights / f"{source.stem}{WEIGHTS_SUFFIX}"
        debug_dir = out_dir / f"{source.stem}_debug" if save_debug else None
        jobs.append(Job(source, output, weights_out, debug_dir))
    _check_outputs(jobs)
    return jobs


def names_a_file(path: Path, option: str, suffixes: tuple[str, ...], count: int) -> bool:
    """True when ``path`` names one output file, False when it is a folder; a ConfigError
    when it can be neither. A path with an unknown suffix is refused rather than made a
    folder (``--out photo.gif`` would otherwise create a folder named photo.gif)."""
    if path.is_dir():
        return False
    expected = ", ".join(suffixes)
    if path.suffix.lower() in suffixes:
        if count > 1:
            raise ConfigError(f"{option} {path} names one file, but there are {count} input photos: give a folder")
        return True
    if path.exists():
        raise ConfigError(f"{option} {path} is an existing file: expected a folder or a file name ending in {expected}")
    if path.suffix:
        raise ConfigError(f"{option} {path}: unsupported suffix {path.suffix!r}, expected one of {expected} "
                          "(to write into a folder of that name, create it first)")
    return False


def prepare_folders(jobs: list[Job], report: Path | None, started: float) -> None:
    """Create the output folders and check that they take files, before any photo runs; remove the
    temp files an earlier run killed at the rename left there (older than ``started``, a time.time())."""
    if report is not None and report.is_dir():
        raise ConfigError(f"--report {report} is a folder: expected a file name such as report.json")
    files = [path for job in jobs for path in (job.output, job.weights_out) if path is not None]
    for folder in sorted({path.parent for path in [*files, *([report] if report else [])]}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
            remove_stale_temps(folder, started)
        except OSError as error:
            raise ConfigError(f"cannot write to output folder {folder}: {error.strerror or error}") from None


def _check_given_once(sources: list[Path]) -> None:
    seen: dict[Path, Path] = {}
    for source in sources:
        key = source.resolve()
        if key in seen:
            also = "" if seen[key] == source else f" (also as {seen[key]})"
            raise ConfigError(f"{source} is given twice{also}: give each photo once")
        seen[key] = source


def _check_outputs(jobs: list[Job]) -> None:
    inputs = {job.source.resolve(): job.source for job in jobs}
    written: dict[Path, Path] = {}
    for job in jobs:
        target = job.output.resolve()
        if target in inputs:
            raise ConfigError(f"the output of {job.source} would replace the input photo {inputs[target]}: "
                              "choose another --out")
        if target in written:
            raise ConfigError(f"{written[target]} and {job.source} would both be written to {job.output}: "
                              "rename one or run them separately")
        written[target] = job.source
