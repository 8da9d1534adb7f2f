"""`pip install .` into a fresh virtual environment, then every console script answers --help
and `f2n-bench check` finds its baseline in the installed package.

The heavy dependencies (torch, ...) are not installed again: the fresh venv sees the
site-packages of the interpreter running the tests through a .pth file. (A venv built with
``system_site_packages=True`` would see the *base* interpreter's packages, which is not
where they are when the suite itself runs in a venv.) The .pth lists plain folders, so the
.pth files inside them (an editable f2n among them) are not run: only the fresh copy of f2n
is importable. What this checks is f2n's own packaging: the package-dir mapping, the
package list, package data and the entry points."""

import importlib.util
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPTS = ("f2n-adapt-and-run", "f2n-export", "f2n-models", "f2n-eval", "f2n-train", "f2n-bench", "f2n-app")


def running_site_packages() -> list[str]:
    """The site-packages folders of the interpreter running the tests, in its own order."""
    return [path for path in sys.path if Path(path).name in ("site-packages", "dist-packages") and Path(path).is_dir()]


def fresh_venv(env_dir: Path) -> Path:
    """A venv without f2n that sees the running interpreter's packages; its python."""
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    own_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    (Path(own_site) / "running-interpreter.pth").write_text("\n".join(running_site_packages()) + "\n")
    return python


@pytest.mark.slow
def test_pip_install_into_fresh_venv_gives_working_console_scripts(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    python = fresh_venv(env_dir)
    # pip (and setuptools, where the running interpreter has it: then nothing is downloaded) come
    # from the running interpreter's packages; without setuptools pip builds in isolation.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", *isolation, str(REPO)],
        check=True,
        cwd=tmp_path,
    )
    # The installed copy is imported, not the checkout: run from a folder outside it.
    located = subprocess.run(
        [str(python), "-c", "import torch, f2n.runtime, f2n.export, f2n.weights, f2n.nets; print(f2n.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    ).stdout.strip()
    assert str(env_dir) in located, f"f2n imported from {located}, not from the fresh venv"
    for script in CONSOLE_SCRIPTS:
        result = subprocess.run(
            [str(env_dir / "bin" / script), "--help"], check=False, capture_output=True, text=True, cwd=tmp_path
        )
        assert result.returncode == 0, f"{script} --help failed: {result.stderr.strip().splitlines()[-1:]}"
        assert "Usage" in result.stdout

    # The baselines are package data: check one stage against this machine class's baseline if
    # the repository has one, else the missing-baseline line must point into the installed package.
    from f2n.benchmarks.machine import machine_class

    has_baseline = (REPO / "benchmarks" / "baseline" / f"{machine_class()}.json").is_file()
    check = subprocess.run(
        [str(env_dir / "bin" / "f2n-bench"), "check", "--only", "decode", "--rounds", "1", "--warmup", "0",
         "--confirm", "0", "--threshold", "1000"],
        check=False, capture_output=True, text=True, cwd=tmp_path,
    )
    if has_baseline:
        assert check.returncode == 0, check.stderr
        assert "latency check passed" in check.stdout
    else:
        assert check.returncode == 0 and "no latency baseline for machine class" in check.stderr, check.stderr
        assert str(env_dir) in check.stderr  # the baselines it looked for are the installed package's
