"""Exception types. Each carries a one-line message that names the actual and the
expected value; the command-line entry points print that line and exit non-zero
(``one_line_errors``)."""

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

import click

T = TypeVar("T")


class F2NError(Exception):
    """Base class of every error f2n raises on purpose."""

    exit_code = 1


class InputImageError(F2NError):
    """An input image is missing, unreadable, truncated, too large or of an unsupported kind."""

    exit_code = 2


class WeightsError(F2NError):
    """A weight file is absent, fails its checksum, or does not fit the network."""

    exit_code = 3


class EngineUnavailableError(F2NError):
    """An inference engine (CUDA, TensorRT, a compiled extension) is not available here."""

    exit_code = 4


class ConfigError(F2NError):
    """An option or a combination of options is invalid."""

    exit_code = 5


def one_line_errors(command: Callable[..., T]) -> Callable[..., T]:
    """Decorate a command: an F2NError becomes ``error: <message>`` on stderr and its exit
    code, never a traceback."""

    @wraps(command)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return command(*args, **kwargs)
        except F2NError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)

    return wrapper
