"""`pip install .` into a fresh virtual environment, then every console script answers --help
and `f2n-bench check` finds its baseline in the installed package.

The heavy dependencies (torch, ...) are not installed again: the fresh venv sees the
site-packages of the interpreter running the tests through a .pth file. (A venv built with
``system_site_packages=True`` would see the *base* interpreter's packages, which is not
where they are when the suite itself runs in a venv.) The .pth lists plain folders, so the
.pth files inside them (an editable f2n among them) are not run: only the fresh copy of f2n
is importable. What this checks is f2n's own packaging: the package-dir mapping, the
package list, package data and the entry points.

The installed scripts run in children that the fresh venv's python forks after importing torch
and onnx, which every script imports: each child runs its script file as ``__main__`` with f2n
not yet imported (it is imported fresh in each, as in a process of its own), and torch is
imported once instead of nine times (the seven --help runs: 170 s as separate processes, 42 s as forks,
on a busy 2-core CPU)."""

import importlib.util
import json
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


# argv[1]: a folder for the outputs; argv[2]: a JSON list of commands (a script's path, then its
# arguments). Prints, per command, its exit code; then the file `import f2n` finds in this venv.
RUN_IN_FORKS = """
import json, os, runpy, sys, traceback
import onnx, torch  # noqa: F401  (what every script imports; f2n is not imported before the forks)

folder, commands = sys.argv[1], json.loads(sys.argv[2])
codes = []
for index, command in enumerate(commands):
    pid = os.fork()
    if pid == 0:
        for fd, stream in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(os.path.join(folder, f"{index}.{stream}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv = command
        code = 0
        try:
            runpy.run_path(command[0], run_name="__main__")
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
import f2n.export, f2n.nets, f2n.runtime, f2n.weights  # noqa: E401
print(json.dumps({"codes": codes, "f2n": f2n.__file__}))
"""


def run_in_forks(python: Path, commands: list[list[str]], folder: Path) -> tuple[list[subprocess.CompletedProcess], str]:
    """Each command (an installed script and its arguments) run by ``RUN_IN_FORKS``, from
    ``folder`` (outside the checkout); their results, and the f2n that the venv imports."""
    outputs = folder / "outputs"
    outputs.mkdir()
    driver = subprocess.run([str(python), "-c", RUN_IN_FORKS, str(outputs), json.dumps(commands)],
                            check=True, capture_output=True, text=True, cwd=folder)
    ran = json.loads(driver.stdout.strip().splitlines()[-1])
    return [subprocess.CompletedProcess(command, code, (outputs / f"{index}.stdout").read_text(),
                                        (outputs / f"{index}.stderr").read_text())
            for index, (command, code) in enumerate(zip(commands, ran["codes"], strict=True))], ran["f2n"]


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
    # The baselines are package data: check one stage against this machine class's baseline if
    # the repository has one, else the missing-baseline line must point into the installed package.
    from f2n.benchmarks.machine import machine_class

    has_baseline = (REPO / "benchmarks" / "baseline" / f"{machine_class()}.json").is_file()
    helps = [[str(env_dir / "bin" / script), "--help"] for script in CONSOLE_SCRIPTS]
    bench_check = [str(env_dir / "bin" / "f2n-bench"), "check", "--only", "decode", "--rounds", "1", "--warmup", "0",
                   "--confirm", "0", "--threshold", "1000"]
    # The installed copy is imported, not the checkout: run from a folder outside it.
    results, located = run_in_forks(python, [*helps, bench_check], tmp_path)
    *helps, check = results
    assert str(env_dir) in located, f"f2n imported from {located}, not from the fresh venv"
    for script, result in zip(CONSOLE_SCRIPTS, helps, strict=True):
        assert result.returncode == 0, f"{script} --help failed: {result.stderr.strip().splitlines()[-1:]}"
        assert "Usage" in result.stdout

    if has_baseline:
        assert check.returncode == 0, check.stderr
        assert "latency check passed" in check.stdout
    else:
        assert check.returncode == 0 and "no latency baseline for machine class" in check.stderr, check.stderr
        assert str(env_dir) in check.stderr  # the baselines it looked for are the installed package's
