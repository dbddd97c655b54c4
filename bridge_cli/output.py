"""What the command prints: tables and ``key: value`` lines for people, one JSON document (or one per line when
following) with ``--json``, progress bars on stderr only for a terminal. Pure formatting, no I/O but ``emit``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

__all__ = [
    "Column",
    "age",
    "brief",
    "emit",
    "emit_json",
    "key_values",
    "progress",
    "respond",
    "table",
]

# (header, how to read a cell from a row)
Column = tuple[str, Callable[[Mapping[str, Any]], Any]]


def emit(text: str, stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


def emit_json(value: Any, *, lines: bool = False) -> None:
    """One JSON document (indented), or with ``lines`` one compact document per line (for ``--follow``)."""
    text = json.dumps(value, ensure_ascii=False, indent=None if lines else 2, separators=(",", ":") if lines else None)
    emit(text)


def respond(as_json: bool, value: Any, text: Callable[[], str] | str, *, lines: bool = False) -> None:
    """``value`` as JSON with ``--json``, else the human ``text`` (built only when needed)."""
    if as_json:
        emit_json(value, lines=lines)
    else:
        emit(text if isinstance(text, str) else text())


def cell(value: Any) -> str:
    """A value as one table cell: nothing for None, yes/no for booleans, compact JSON for objects."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return " ".join(str(value).split())


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], *, empty: str = "(none)") -> str:
    """Rows under aligned headers; the last column is not padded (it may be long)."""
    if not rows:
        return empty
    grid = [[header for header, _ in columns]]
    grid += [[cell(read(row)) for _, read in columns] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    out = []
    for line in grid:
        padded = [text.ljust(widths[i]) for i, text in enumerate(line[:-1])] + [line[-1]]
        out.append("  ".join(padded).rstrip())
    return "\n".join(out)


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    """``key: value`` lines with the values aligned; nested objects as compact JSON."""
    items = [(key, cell(value)) for key, value in pairs]
    width = max((len(key) for key, _ in items), default=0)
    return "\n".join(f"{key + ':':<{width + 1}} {value}" for key, value in items)


def age(seconds: Any) -> str:
    """``42 s``, ``3 min``, ``5.2 h``, ``2.1 d``; ``-`` for None."""
    if seconds is None:
        return "-"
    value = float(seconds)
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    if value < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def brief(value: Any, limit: int = 80) -> str:
    """One line of at most ``limit`` characters."""
    text = cell(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def progress(total: int | None, desc: str, *, enabled: bool, unit: str = "record") -> Any:
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal; otherwise a bar that draws nothing."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not (enabled and sys.stderr.isatty()))
