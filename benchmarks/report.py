"""The report: the machine, the markdown table, the notes and the output checks."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import subprocess
from pathlib import Path

from .measure import ROOT
from .rows import NOISY, Row

HEADER = ("metric", "reference", "ours", "ratio", "goal", "met?")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=10)
        return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def sources() -> str:
    """A digest of the job's and submit's sources: did the code change during the run?"""
    digest = hashlib.sha256()
    for package in ("job", "submit"):
        for path in sorted((ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine() -> list[str]:
    """Where and when the numbers were taken."""
    usable = len(os.sched_getaffinity(0))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- machine: {cpu_model()}, {os.cpu_count()} cores ({usable} usable), "
        f"{platform.system()} {platform.release()}, load average before the run {load}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        f"{_first_line(['tr', '--version'])}",
        f"- date: {now}; commit {_first_line(['git', 'rev-parse', '--short', 'HEAD'])}, "
        f"sources of job/ and submit/ as found (committed or not): digest {sources()}",
    ]


def table(rows: list[Row]) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        cells = (row.metric, row.reference, row.ours, row.ratio, row.goal, row.met)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def checks(rows: list[Row]) -> list[str]:
    lines = []
    for row in rows:
        if row.mismatch:
            lines.append(f"- row {row.key}: **FAILED** ({row.check}): {row.mismatch}")
        elif row.checked:
            lines.append(f"- row {row.key}: {row.check}: yes, {row.checked} "
                         f"check{'s' if row.checked != 1 else ''}")
    return lines


def render(rows: list[Row], context: list[str], machine_lines: list[str]) -> str:
    noisy = [f"{row.key} ({row.others:.0%})" for row in rows if row.others > NOISY]
    if noisy:
        context = [*context, "- **the machine was busy**: other processes used a share of the "
                   "CPUs during rows " + ", ".join(noisy) + "; their times are noisy"]
    parts = ["# Benchmarks: the job against its references", "", *machine_lines, *context, "", *table(rows), "",
             "Notes:", ""]
    for row in rows:
        parts.extend(f"- row {row.key}: {note}" for note in row.notes)
    parts += ["", "Checks (outputs compared by the sha256 of every file):", "", *checks(rows)]
    return "\n".join(parts) + "\n"


def write(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    temp.replace(path)
