"""The batch manifest: one JSON line per processed photo, appended as results arrive.

Only the driver writes it, one whole line per ``write`` on a file opened for appending,
flushed and fsynced before the next photo is counted: a killed driver leaves at most one
torn last line, which is ignored on reading (and ended before the next append). An
exclusive lock keeps a second driver off the same manifest. The latest line of a photo
wins: ``ok`` photos are skipped by a re-run, ``failed`` ones are tried again.

A line is the photo's ``RunReport`` (``input``, ``output``, ``status``, ``reason``,
``timings`` …) plus ``seed``, ``worker`` and ``options`` (the pipeline options' digest).
"""

import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from f2n.errors import ConfigError
from f2n.runtime.report import RunReport


class Manifest:
    def __init__(self, path: Path, options_digest: str) -> None:
        """Open (or create) ``path`` for a run with pipeline options ``options_digest``; a
        manifest written with other options is refused (its outputs would mix settings)."""
        self.path = path
        self.options = options_digest
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = open(path, "a+", encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot open manifest {path}: {error.strerror or error}") from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise ConfigError(f"manifest {path} is in use by another f2n-batch run") from None
        self.latest, self.torn = self._read()
        others = {line.get("options") for line in self.latest.values()} - {options_digest}
        if others:
            self.close()
            raise ConfigError(f"manifest {path} was written with other pipeline options: give another --out "
                              "(or --manifest), or the same options as before")

    def _read(self) -> tuple[dict[str, dict[str, Any]], int]:
        self._file.seek(0)
        latest, torn = {}, 0
        content = self._file.read()
        self._torn_tail = bool(content) and not content.endswith("\n")
        for text in content.splitlines():
            try:
                line = json.loads(text)
                latest[line["input"]] = line
            except (ValueError, KeyError, TypeError):
                torn += 1  # the last line of a killed run
        return latest, torn

    def status(self, source: str) -> str | None:
        line = self.latest.get(source)
        return line["status"] if line is not None else None

    def append(self, line: Mapping[str, Any]) -> None:
        record = {**line, "options": self.options}
        text = json.dumps(record, default=float) + "\n"
        if self._torn_tail:
            text, self._torn_tail = "\n" + text, False  # end the torn line first
        self._file.write(text)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.latest[record["input"]] = record

    def reread(self) -> None:
        """Take the file as the truth again: a stop signal can land between a line's write and
        its record in memory, and what the next run resumes from is the file."""
        self.latest, self.torn = self._read()

    def reports(self, sources: list[str]) -> list[RunReport]:
        """The latest report of each of ``sources`` that has one, in that order."""
        fields = RunReport.__dataclass_fields__
        return [RunReport(**{k: v for k, v in self.latest[s].items() if k in fields})
                for s in sources if s in self.latest]

    def close(self) -> None:
        self._file.close()  # closing releases the lock

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
