"""f2n's click command and group: all seven scripts end the same way.

Every ending is one line on stderr and the README's exit code: an :class:`F2NError` its own
code, a usage error (an unknown option, ``--tile abc``) ConfigError's 5 instead of click's 2
(which here means that every photo failed), Ctrl-C 130 and SIGTERM 143 with a line that says
what was written, never click's "Aborted!" and exit 1 or a traceback.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from f2n.console import Stopped, Terminated, handle_sigterm, stop_line
from f2n.errors import ConfigError, F2NError

# What a command that does not say more can truly claim: f2n writes its outputs atomically.
DEFAULT_STOP_NOTE = "the command did not finish; no file was left half-written"


class _Ending:
    """The ending shared by :class:`Command` and :class:`Group` (click's ``main`` and ``invoke``)."""

    stop_note = DEFAULT_STOP_NOTE

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except KeyboardInterrupt as stop:  # before click turns it into "Aborted!" and exit 1
            raise Stopped(stop, self.stop_note) from None

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:  # a caller that handles the ending itself
            return super().main(args, prog_name, complete_var, False, **extra)  # type: ignore[misc]
        restore = handle_sigterm()
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)  # type: ignore[misc]
            line, code = None, result if isinstance(result, int) and not isinstance(result, bool) else 0
        except F2NError as error:
            line, code = f"error: {error}", error.exit_code
        except click.exceptions.NoArgsIsHelpError as error:  # a group called bare: its help, as a usage error
            line, code = error.ctx.get_help() if error.ctx is not None else str(error), ConfigError.exit_code
        except click.ClickException as error:
            line, code = f"error: {error.format_message()}", ConfigError.exit_code
        except Stopped as stop:
            line, code = stop_line(stop, stop.message)
        except (KeyboardInterrupt, Terminated, click.Abort) as stop:  # Abort: Ctrl-C at a prompt or while parsing
            line, code = stop_line(stop, self.stop_note)
        finally:
            restore()
        _end(line, code)


def _end(line: str | None, code: int) -> NoReturn:
    if line is not None:
        click.echo(line, err=True)
    sys.exit(code)


class Command(_Ending, click.Command):
    """A click command that ends as every f2n command does. ``stop_note``: what a stop leaves."""

    def __init__(self, *args: Any, stop_note: str = DEFAULT_STOP_NOTE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_note = stop_note


class Group(_Ending, click.Group):
    """A click group whose commands (and the group itself) end as every f2n command does."""

    command_class = Command
    group_class = type  # sub-groups are Groups too

    def __init__(self, *args: Any, stop_note: str = DEFAULT_STOP_NOTE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_note = stop_note
