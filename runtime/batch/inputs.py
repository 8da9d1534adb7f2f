"""Which photos a batch covers and where each one's output goes.

An input is a folder (its image files, not recursive), a glob (``scans/*.jpg``), a text
file of paths or URIs (``.txt``/``.lst``, one a line, ``#`` comments), a photo, or an fsspec
URI (``s3://bucket/photos/``, ``gs://…/*.jpg``) where the filesystem's library is installed.
Outputs follow f2n-adapt-and-run's layout: ``OUT/<stem>.png``, where OUT is a folder or a URI.
"""

import glob
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from f2n.errors import ConfigError
from f2n.runtime.batch.storage import is_uri, join, location
from f2n.runtime.images import IMAGE_SUFFIXES, image_files
from f2n.runtime.jobs import OUTPUT_SUFFIX, photo_seed

LIST_SUFFIXES = (".txt", ".lst")


@dataclass(frozen=True)
class Photo:
    """One photo of a batch: ``source`` an absolute path or a URI (the manifest's key), ``output``
    one or the other too."""

    source: str
    output: str
    seed: int


def plan_photos(inputs: tuple[str, ...], out_dir: str | Path) -> list[Photo]:
    if not inputs:
        raise ConfigError("no input: expected folders, globs, photo paths or URIs, or .txt lists of them")
    sources = [source for spec in inputs for source in expand(spec)]
    out = location(out_dir)
    photos, by_output = [], {}
    for source in sources:
        name = _name(source)
        output = join(out, f"{PurePosixPath(name).stem}{OUTPUT_SUFFIX}")
        if output in by_output:
            what = "is given twice" if by_output[output] == source else f"and {by_output[output]} would both be written to {output}"
            raise ConfigError(f"{source} {what}: give each photo once, with distinct file names")
        if source == output:
            raise ConfigError(f"the output of {source} would replace it: choose another --out")
        by_output[output] = source
        photos.append(Photo(source, output, photo_seed(name)))
    return photos


def expand(spec: str) -> list[str]:
    """The photos one input names (absolute paths or URIs)."""
    spec = spec.removeprefix("file://")
    if is_uri(spec):
        return _expand_uri(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        found = image_files(path)
        if not found:
            raise ConfigError(f"no images in folder {path} (expected files ending in {', '.join(IMAGE_SUFFIXES)})")
        return [str(p.resolve()) for p in found]
    if glob.has_magic(spec):
        found = sorted(p for p in glob.glob(str(path)) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ConfigError(f"no images match {spec}")
        return [str(Path(p).resolve()) for p in found]
    if path.suffix.lower() in LIST_SUFFIXES:
        return _read_list(path)
    return [str(path.resolve())]  # a missing or unreadable photo fails on its own, as a manifest line


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the list of photos {path}: {error}") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise ConfigError(f"the list of photos {path} is empty")
    # relative entries are relative to the list's folder, as in a playlist
    return [entry if is_uri(entry) else str((path.parent / Path(entry.removeprefix("file://")).expanduser()).resolve())
            for entry in entries]


def _expand_uri(uri: str) -> list[str]:
    """A folder or glob of URIs through fsspec; a single URI is taken as it is."""
    if not (glob.has_magic(uri) or uri.endswith("/")):
        return [uri]
    try:
        import fsspec
    except ImportError:
        raise ConfigError(f"{uri} needs fsspec: pip install 'f2n[ray]'") from None
    try:
        fs, root = fsspec.core.url_to_fs(uri)
        found = fs.glob(root) if glob.has_magic(uri) else fs.ls(root, detail=False)
    except (ImportError, ValueError) as error:  # no library for the protocol, or a malformed URI
        raise ConfigError(f"cannot list {uri}: {error}") from None
    except OSError as error:
        raise ConfigError(f"cannot list {uri}: {error}") from None
    images = sorted(p for p in found if PurePosixPath(p).suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ConfigError(f"no images at {uri}")
    return [location(fs.unstrip_protocol(p)) for p in images]  # a local file system's: plain paths


def _name(source: str) -> str:
    return PurePosixPath(source.rstrip("/")).name if is_uri(source) else Path(source).name
