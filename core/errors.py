"""Exception types. Each carries a one-line message that names the actual and the
expected value; every command prints that line and exits with ``exit_code``
(:class:`f2n.command.Command`)."""


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



# What CUDA says after a kernel's failed assert or a bad memory access. The context is broken from
# then on: every later CUDA call in the process fails the same way.
_BROKEN_CONTEXT = ("device-side assert triggered", "an illegal memory access was encountered",
                   "unspecified launch failure", "misaligned address")


def breaks_the_device(error: BaseException) -> bool:
    """Whether ``error`` leaves this process's CUDA context unusable: a run over many photos must
    stop there rather than fail every later photo."""
    return isinstance(error, RuntimeError) and any(text in str(error) for text in _BROKEN_CONTEXT)
