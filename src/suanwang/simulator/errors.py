"""Errors of the simulator. Each is one readable line naming what to fix.

DomainError (suanwang.domain.errors)
└── ValidationError
    └── SimulationError          bad simulator input or a run that cannot proceed
        ├── TraceError           a trace row is wrong: file, line and field
        └── InvariantViolation   the run broke a conservation or terminal-state invariant
"""

from __future__ import annotations

from pathlib import Path

from suanwang.domain.errors import ValidationError


class SimulationError(ValidationError):
    """Bad simulator input (fleet, quotas, policy name, what-if change) or a stuck run."""


class TraceError(SimulationError):
    """A trace file is malformed; the message names the file, the line and the field.

    Attributes:
        path: The trace file.
        line: 1-based line number in the file (the header is line 1 of a CSV file).
        field_name: The offending field (column or JSON key).
    """

    def __init__(self, path: Path | str, line: int, field_name: str, problem: str) -> None:
        """Create the error; the message reads ``FILE:LINE: field 'F': PROBLEM``."""
        super().__init__(
            f"{path}:{line}: field {field_name!r}: {problem}",
            hint="see docs/trace-format.md for the trace format",
        )
        self.path = Path(path)
        self.line = line
        self.field_name = field_name


def unreadable(
    path: Path, exc: OSError | UnicodeDecodeError, option: str | None
) -> SimulationError:
    """The error for a file that cannot be read: what and why, in one line."""
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if isinstance(exc, UnicodeDecodeError):
        why = "not UTF-8 text"
    return SimulationError(f"cannot read {path}: {why}", field=option)


class InvariantViolation(SimulationError):
    """A simulation result broke an invariant: a bug in the engine or in a policy."""
