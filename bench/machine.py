"""What a figure was measured on: printed with every table."""

from __future__ import annotations

import datetime
import os
import platform

import psutil


def describe() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores ({cpu}), "
        f"{memory:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def table(title: str, header: tuple[str, ...], rows: list[tuple[object, ...]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [f"### {title}", "", f"Machine: {describe()}", ""]
    lines.append(_row(header, widths))
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines.extend(_row(row, widths) for row in rows)
    return "\n".join(lines)


def _row(cells: tuple[object, ...], widths: list[int]) -> str:
    return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"
