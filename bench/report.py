"""The benchmark's one table: rows with a value and a unit, the issue's targets and whether each was met."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Row", "Target", "fmt", "render_console", "render_markdown"]


def fmt(value: float) -> str:
    """A figure with as many digits as it deserves."""
    if math.isinf(value):
        return "inf"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"


@dataclass(frozen=True)
class Target:
    """A target from the issue: ``value`` at most (``<=``) or at least (``>=``) ``limit``."""

    op: str
    limit: float
    unit: str

    def __str__(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {fmt(self.limit)} {self.unit}".strip()

    def met(self, value: float) -> bool:
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def verdict(self, value: float) -> str:
        if self.met(value):
            spare = (self.limit - value) if self.op == "<=" else (value - self.limit)
            return f"met ({fmt(spare)} {self.unit} to spare)".replace("  ", " ")
        short = (value - self.limit) if self.op == "<=" else (self.limit - value)
        return f"MISSED by {fmt(short)} {self.unit} ({fmt(value / self.limit)}× the target)".replace("  ", " ")


@dataclass
class Row:
    section: str
    figure: str
    value: float | None
    unit: str = ""
    how: str = ""  # how it was measured or computed
    target: Target | None = None
    why: str = ""  # for a missed target: why
    missing: str = ""  # for a figure not measured: why not

    @property
    def shown(self) -> str:
        if self.value is None:
            return self.missing or "not measured"
        return f"{fmt(self.value)} {self.unit}".strip()

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "not measured" if self.value is None else self.target.verdict(self.value)

    @property
    def explained(self) -> str:
        """The verdict, with the reason when the target was missed."""
        missed = self.target is not None and self.value is not None and not self.target.met(self.value)
        return f"{self.verdict}: {self.why}" if missed and self.why else self.verdict


def render_console(rows: list[Row]) -> str:
    """A fixed-width table: figure, value, target, verdict; sections as headings."""
    header = ("figure", "value", "target", "verdict")
    body = [(r.figure, r.shown, str(r.target) if r.target else "", r.verdict) for r in rows]
    widths = [max(len(header[i]), *(len(line[i]) for line in body)) for i in range(3)]
    widths = [min(w, cap) for w, cap in zip(widths, (70, 44, 16), strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells[:3], widths, strict=True)) + "  " + cells[3]

    out = [line(header), "-" * (sum(widths) + 6 + 40)]
    section = None
    for row, cells in zip(rows, body, strict=True):
        if row.section != section:
            section = row.section
            out.append(f"[{section}]")
        out.append(line(cells).rstrip())
    return "\n".join(out)


def render_markdown(rows: list[Row]) -> str:
    out = ["| figure | value | target | verdict | how |", "|---|---|---|---|---|"]
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            out.append(f"| **{section}** | | | | |")
        cells = (row.figure, row.shown, str(row.target) if row.target else "", row.explained, row.how)
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(out)
