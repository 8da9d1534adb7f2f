"""The console scripts' entry points, and how every one of them stops.

This module imports only the standard library: a script's SIGTERM handler is in place, and a
Ctrl-C is caught, *before* the command's module imports torch and the rest (seconds on a loaded
machine), so that a stop during start-up is one line and the shell's code (130, 143), not a
traceback. Once running, :class:`f2n.command.Command` handles stops and errors the same way.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # the shell's code for a process ended by SIGTERM
EXIT_DEMO_LOST = 7  # f2n-adapt-and-run --demo: adaptation did not beat the base network


class Terminated(BaseException):
    """SIGTERM (a service manager, a batch scheduler) arrived: stop like Ctrl-C. A BaseException,
    as KeyboardInterrupt is, so that no per-photo ``except Exception`` goes on past it."""


class Stopped(BaseException):
    """A command stopped by Ctrl-C or SIGTERM that knows what it had written: ``message`` says
    exactly that (the generic line does not know)."""

    def __init__(self, cause: KeyboardInterrupt | Terminated, message: str) -> None:
        super().__init__(message)
        self.cause = cause
        self.message = message


def stop_line(stop: BaseException, what: str) -> tuple[str, int]:
    """The one stderr line and the exit code for a stop (``what``: what was and was not written)."""
    terminated = isinstance(stop, Terminated) or isinstance(getattr(stop, "cause", None), Terminated)
    if terminated:
        return f"terminated (SIGTERM): {what}", EXIT_TERMINATED
    return f"interrupted: {what}", EXIT_INTERRUPTED


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def handle_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into :class:`Terminated` (main thread only: a command run from a worker
    thread, as tests may, leaves signals alone). Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    return lambda: signal.signal(signal.SIGTERM, previous)


def script(target: str) -> Callable[[], None]:
    """A console script for the click command ``module:attribute``, imported behind the stop
    handling."""

    def main() -> None:
        handle_sigterm()  # kept for the whole process: the command installs it again while it runs
        try:
            module, _, name = target.partition(":")
            command = getattr(importlib.import_module(module), name)
        except (KeyboardInterrupt, Terminated) as stop:
            line, code = stop_line(stop, "stopped while starting; nothing was written")
            print(line, file=sys.stderr)
            sys.exit(code)
        command()

    return main


adapt_and_run = script("f2n.runtime.cli:main")
batch = script("f2n.runtime.batch.cli:main")
export = script("f2n.export.cli:main")
models = script("f2n.weights.cli:main")
evaluate = script("f2n.eval.cli:main")
train = script("f2n.training.cli:main")
bench = script("f2n.benchmarks.cli:main")
app = script("f2n.app.cli:main")
