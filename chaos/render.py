"""What a judged chaos run looks like outside: the table with its details and the command that reproduces it
(``render``, Markdown: it goes to a terminal and into docs/RELIABILITY.md), the JSON a test reads (``to_json``),
and the docs' "Last run" section (``write_last_run``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .report import Findings
from .scenario import ChaosRun

__all__ = ["END_MARK", "START_MARK", "code_version", "dump_json", "render", "to_json", "write_last_run"]

_COLUMNS = [
    ("accepted", "accepted"),
    ("synced", "synced"),
    ("dead", "dead"),
    ("unconfirmed", "unconfirmed"),
    ("stuck", "stuck"),
    ("lost", "lost"),
    ("delivered_twice", "delivered >1"),
    ("unknown_outcome", "outcome unknown"),
    ("unexplained", "unexplained"),
]
START_MARK = "<!-- chaos:last-run:start -->"
END_MARK = "<!-- chaos:last-run:end -->"


def code_version() -> str:
    """The commit the run measured, and whether the checkout had changes on top (read-only git commands)."""
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    root = str(Path(__file__).resolve().parent.parent)

    def ask(*args: str) -> str:
        found = subprocess.run([git, "-C", root, *args], capture_output=True, text=True, check=True)  # noqa: S603
        return found.stdout.strip()

    try:
        commit = ask("rev-parse", "--short", "HEAD")
        changed = ask("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"commit {commit}" + (" with uncommitted changes" if changed else "")


def render(run: ChaosRun, findings: Findings) -> str:
    """The table, the details and the command, as Markdown (it goes to a terminal and into the docs)."""
    config = run.config
    faults = ",".join(sorted(config.faults)) or "none"
    head = (
        f"{config.records} records, seed {config.seed}, faults {faults}: {len(run.round_lines)} chaos rounds + "
        f"{run.clean_rounds} clean rounds in {run.wall_s:.1f} s (intake {run.intake_s:.1f} s) on "
        f"{os.cpu_count()} cores, {run.started_at:%Y-%m-%d %H:%M} UTC; code: {code_version()}"
    )
    header = "| kind | " + " | ".join(title for _, title in _COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(_COLUMNS)
    rows = [
        f"| {name} | " + " | ".join(str(getattr(figure, attr)) for attr, _ in _COLUMNS) + " |"
        for name, figure in findings.figures.items()
    ]
    verdict = "PASS" if findings.ok else "FAIL: " + "; ".join(findings.violations)
    parts = [head, "", header, rule, *rows, "", *[f"- {line}" for line in findings.details]]
    if findings.unexplained_examples:
        parts += ["", "Unexplained re-deliveries (first few):", *[f"- {e}" for e in findings.unexplained_examples]]
    parts += ["", f"Verdict: {verdict}", "", f"Reproduce: `{config.command()}`"]
    return "\n".join(parts)


def to_json(run: ChaosRun, findings: Findings) -> dict[str, Any]:
    """What a test needs, as plain data."""
    return {
        "ok": findings.ok,
        "violations": findings.violations,
        "figures": {name: figure.to_dict() for name, figure in findings.figures.items()},
        "details": findings.details,
        "unexplained_examples": findings.unexplained_examples,
        "injected": findings.injected,
        "rounds": run.round_lines,
        "wall_s": round(run.wall_s, 1),
        "command": run.config.command(),
        "report": render(run, findings),
    }


def write_last_run(path: Path, text: str) -> None:
    """Replace what stands between the last-run markers of ``path`` with ``text``."""
    document = path.read_text(encoding="utf-8")
    start, end = document.index(START_MARK) + len(START_MARK), document.index(END_MARK)
    path.write_text(document[:start] + "\n" + text.strip() + "\n" + document[end:], encoding="utf-8")


def dump_json(path: Path, run: ChaosRun, findings: Findings) -> None:
    path.write_text(json.dumps(to_json(run, findings), indent=2, default=str), encoding="utf-8")
