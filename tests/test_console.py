"""Issue 26, item 3: all seven commands end the same way (README's exit-code table): a usage
error is one line and 5, Ctrl-C one line and 130, SIGTERM one line and 143, also while the
libraries are still importing."""

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import tomllib
from click.testing import CliRunner

from f2n.console import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated

ROOT = Path(__file__).resolve().parents[1]
# Each script's command, and arguments that get past click's parsing into its code.
COMMANDS = {
    "f2n-adapt-and-run": ("f2n.runtime.cli", []),
    "f2n-batch": ("f2n.runtime.batch.cli", []),
    "f2n-export": ("f2n.export.cli", []),
    "f2n-models": ("f2n.weights.cli", ["list"]),
    "f2n-eval": ("f2n.eval.cli", ["run", "x", "--out", "y"]),
    "f2n-train": ("f2n.training.cli", []),
    "f2n-bench": ("f2n.benchmarks.cli", ["report"]),
}


def command(script: str) -> click.Command:
    """The click command of an installed script."""
    return importlib.import_module(COMMANDS[script][0]).main


def test_every_script_starts_through_f2n_console() -> None:
    """Only there is a Ctrl-C during the libraries' import one line (see the last test)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(COMMANDS)
    assert all(target.startswith("f2n.console:") for target in scripts.values()), scripts


@pytest.mark.parametrize("script", COMMANDS)
def test_an_unknown_option_is_one_line_and_exit_5(script: str) -> None:
    result = CliRunner().invoke(command(script), ["--zzz"])
    assert result.exit_code == 5, result.output
    assert result.output.strip() == "error: No such option '--zzz'."


@pytest.mark.parametrize("stop, code, word", [(KeyboardInterrupt, EXIT_INTERRUPTED, "interrupted: "),
                                              (Terminated, EXIT_TERMINATED, "terminated (SIGTERM): ")])
@pytest.mark.parametrize("script", COMMANDS)
def test_a_stop_inside_the_command_is_one_line_and_its_code(script: str, stop: type[BaseException], code: int,
                                                            word: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What SIGINT (KeyboardInterrupt) and f2n's SIGTERM handler (Terminated) raise, raised where the
    command's own code runs: click alone says "Aborted!" and exits 1, and lets Terminated through."""
    main = command(script)

    def stopped(*args: object, **kwargs: object) -> None:
        raise stop

    monkeypatch.setattr(main, "callback", stopped)
    result = CliRunner().invoke(main, COMMANDS[script][1])
    assert result.exit_code == code, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(word), result.output


def _start(code: str, **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kwargs)


@pytest.mark.parametrize("sent, code, line", [
    (signal.SIGINT, EXIT_INTERRUPTED, "interrupted: stopped while starting; nothing was written"),
    (signal.SIGTERM, EXIT_TERMINATED, "terminated (SIGTERM): stopped while starting; nothing was written")])
def test_a_stop_while_the_libraries_import_is_one_line(sent: signal.Signals, code: int, line: str) -> None:
    """The hostile-input run's case: Ctrl-C during start-up printed a traceback and exited -2."""
    script = "print('started', flush=True); from f2n.console import adapt_and_run; adapt_and_run()"
    process = _start(script)
    try:
        assert process.stdout.readline().strip() == "started"
        time.sleep(0.3)  # inside the import of f2n.runtime.cli (torch, cv2, openvino: seconds)
        process.send_signal(sent)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    assert stderr.strip() == line


@pytest.mark.parametrize("args, named", [(["--engine", "torch"], "--engine"), (["x.png"], "a photo"),
                                         (["--report", "r.json"], "--report"), (["--prior", "gfpgan"], "--prior")])
def test_demo_refuses_the_options_it_would_ignore(args: list[str], named: str) -> None:
    result = CliRunner().invoke(command("f2n-adapt-and-run"), ["--demo", *args])
    assert result.exit_code == 5, result.output
    assert result.output.startswith("error: --demo runs on its own photo") and f"take {named}:" in result.output


def test_demo_adaptation_lost_has_a_code_of_its_own_in_the_readme() -> None:
    """Exit 1 means "some photos of a batch failed"; the demo's verdict is not that."""
    from f2n.console import EXIT_DEMO_LOST

    rows = [line.split("|")[1].strip() for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert EXIT_DEMO_LOST not in (0, 1, 2, 3, 4, 5, 6, 130, 143) and str(EXIT_DEMO_LOST) in rows


def test_a_cuda_device_side_assert_stops_the_run(tmp_path: Path) -> None:
    """After a device-side assert every CUDA call fails: going on would fail each later photo."""
    from f2n.errors import EngineUnavailableError, breaks_the_device
    from f2n.runtime.cli import process
    from f2n.runtime.jobs import Job

    assert breaks_the_device(RuntimeError("CUDA error: device-side assert triggered\nCUDA kernel errors might be ..."))
    assert breaks_the_device(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not breaks_the_device(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not breaks_the_device(ValueError("device-side assert triggered"))  # not what CUDA raises

    def pipeline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA error: device-side assert triggered")

    job = Job(tmp_path / "a.png", tmp_path / "out" / "a.png", None, None)
    with pytest.raises(EngineUnavailableError, match="the CUDA context is broken, so the run stops here"):
        process(pipeline, job, overwrite=False)  # type: ignore[arg-type]

    def other(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a shape mismatch")

    assert process(other, job, overwrite=False).status == "failed"  # type: ignore[arg-type]


WORKER = '''
import sys
from pathlib import Path
from f2n.runtime.batch.worker import AttemptCounter, PhotoWorker

class Broken:  # a pipeline whose photo broke the CUDA context
    engine_choice = None

    def __call__(self, *args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered")

worker = PhotoWorker.__new__(PhotoWorker)
worker.name, worker.setup_error, worker.max_attempts = "test", None, 3
worker.attempts, worker.pipeline = AttemptCounter(Path(sys.argv[1])), Broken()
print(worker.process("photo.png", Path(sys.argv[1]) / "out.png", 0))
'''


def test_a_batch_worker_whose_device_broke_ends_itself(tmp_path: Path) -> None:
    """Its photo is handed to a fresh worker (an attempt counted), not failed with every later one."""
    done = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stdout == "" and "Traceback" not in done.stderr, (done.stdout, done.stderr)
