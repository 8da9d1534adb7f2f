"""Issue 26: fetching weights. Two processes fetching the same file must not write one ``.part``
together (each deleting the other's work); what an installed package holds builds offline."""

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from f2n.weights.cli import main as models_cli

BLOB = os.urandom(3 << 19)  # 1.5 MiB: more than one read (f2n.fileio.CHUNK) of the download loop

FETCH = '''
import sys
from f2n.weights.registry import WeightSpec
from f2n.weights.store import fetch
spec = WeightSpec(name="blob", filename="blob.bin", url=sys.argv[1], sha256=sys.argv[2], license="", description="")
print(fetch(spec))
'''


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """Serves BLOB; the first request waits (up to 2 s) for a second one, and the body comes in two
    parts 0.5 s apart, so that two downloads that can overlap do overlap. Yields the URL and the
    requests it answered."""
    arrived = threading.Barrier(2, timeout=2)
    answered: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                arrived.wait()
            except threading.BrokenBarrierError:
                pass
            answered.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(BLOB)))
            self.end_headers()
            self.wfile.write(BLOB[: 1 << 20])
            self.wfile.flush()
            time.sleep(0.5)
            self.wfile.write(BLOB[1 << 20:])

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/blob.bin", answered
    httpd.shutdown()


def test_two_processes_fetching_one_file_both_get_it(server: tuple[str, list[str]], isolated_f2n_home: Path) -> None:
    url, answered = server
    digest = hashlib.sha256(BLOB).hexdigest()
    env = {**os.environ, "F2N_HOME": str(isolated_f2n_home)}
    processes = [subprocess.Popen([sys.executable, "-c", FETCH, url, digest], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [process.communicate(timeout=300) for process in processes]
    for process, (stdout, stderr) in zip(processes, results):
        assert process.returncode == 0, stderr
        assert stdout.strip() == str(isolated_f2n_home / "blob.bin")
    assert (isolated_f2n_home / "blob.bin").read_bytes() == BLOB
    assert len(answered) == 1  # the second process found the first one's file
    assert not [p.name for p in isolated_f2n_home.iterdir() if p.name.endswith(".part")]


def test_fetch_builds_packaged_weights_offline(monkeypatch: pytest.MonkeyPatch, isolated_f2n_home: Path) -> None:
    """``f2n-models list`` says "builds from package": ``fetch`` must then work without a network."""
    monkeypatch.setenv("F2N_OFFLINE", "1")
    listed = CliRunner().invoke(models_cli, ["list"])
    entry = next(line for line in listed.output.splitlines() if "retinaface-mobilenet0.25" in line)
    assert "builds from package" in entry
    result = CliRunner().invoke(models_cli, ["fetch", "retinaface-mobilenet0.25"])
    assert result.exit_code == 0, result.output
    assert Path(result.output.strip()).is_file() and Path(result.output.strip()).parent == isolated_f2n_home
