"""Where a batch file's problems are and how they are reported.

Every problem is collected as a :class:`BatchError` (file, line, column, field, message) and raised
together in one :class:`BatchInvalid`, so nothing is submitted from a file with any error.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from gen_server.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Pos:
    """A place in a source file: 1-based line and column (column ``None`` when unknown)."""

    line: int
    column: int | None = None


@dataclass(frozen=True, slots=True)
class BatchError:
    """One problem in a batch file, reported as ``file:line:column: field: message``."""

    file: str
    line: int | None
    column: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
        }


class BatchInvalid(InvalidInput):
    """A batch file with one or more errors; ``errors`` lists all of them, sorted by line."""

    code = "invalid_batch"

    def __init__(self, errors: list[BatchError]) -> None:
        self.errors = sorted(set(errors), key=lambda e: (e.line or 0, e.column or 0, e.message))
        count = len(self.errors)
        first = str(self.errors[0]) if self.errors else ""
        super().__init__(
            f"{count} error{'s' if count != 1 else ''} in batch file; first: {first}", field="file"
        )


class Collector:
    """Gathers the :class:`BatchError` s of one file (``source``) as they are found."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[BatchError] = []

    def add(self, pos: Pos | None, fld: str | None, message: str) -> None:
        self.errors.append(
            BatchError(self.source, pos.line if pos else None, pos.column if pos else None, fld, message)
        )


def suggest(name: str, known: tuple[str, ...] | list[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``known`` to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
