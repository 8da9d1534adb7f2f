"""`pip install .` into a fresh virtual environment, then every console script answers --help.

The venv sees the system site-packages so the heavy dependencies (torch, ...) are not
downloaded again; what this checks is f2n's own packaging: the package-dir mapping,
the package list, package data and the entry points."""

import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPTS = ("f2n-adapt-and-run", "f2n-export", "f2n-models", "f2n-eval", "f2n-train", "f2n-bench")


@pytest.mark.slow
def test_pip_install_into_fresh_venv_gives_working_console_scripts(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(REPO)],
        check=True,
        cwd=tmp_path,
    )
    # The installed copy is imported, not the checkout: run from a folder outside it.
    located = subprocess.run(
        [str(python), "-c", "import f2n.runtime, f2n.export, f2n.weights, f2n.nets; print(f2n.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    ).stdout.strip()
    assert str(env_dir) in located, f"f2n imported from {located}, not from the fresh venv"
    for script in CONSOLE_SCRIPTS:
        result = subprocess.run(
            [str(env_dir / "bin" / script), "--help"], capture_output=True, text=True, cwd=tmp_path
        )
        assert result.returncode == 0, f"{script} --help failed: {result.stderr.strip().splitlines()[-1:]}"
        assert "Usage" in result.stdout
