"""Markdown pieces of the report (summary.md): cells, tables and relative links, one way for
every section (cosmo_sbi.report, report_posterior, verdict, learning_curve)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def cell(value: Any, digits: int = 3) -> str:
    """A table cell: '-' for a missing value (None or ''), strings and booleans as they are,
    integers with thousands separators, other numbers to ``digits`` significant digits."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a Markdown table with ``header`` and ``rows`` of formatted cells."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(row) + " |" for row in rows]]


def link(target: str | os.PathLike[str], output_dir: str | os.PathLike[str]) -> str:
    """Path of ``target`` relative to ``output_dir`` (where summary.md lives), '/'-separated."""
    return Path(os.path.relpath(target, output_dir)).as_posix()
