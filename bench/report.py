"""What every benchmark shares: percentiles, the machine it ran on, and appending a section to docs/benchmarks.md."""

from __future__ import annotations

import datetime
import os
import pathlib
import platform

REPO = pathlib.Path(__file__).resolve().parent.parent
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Figures measured by the scripts in `bench/`, newest last. Each section names the machine, the date and the
command that reproduces it. Machines are shared and noisy: compare figures within one run (the ratios),
not across runs.
"""


def percentile(values, fraction):
    """The nearest-rank percentile of ``values`` (0 < fraction <= 1)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def machine():
    cpu = "unknown CPU"
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = "%s %s" % (platform.system(), platform.release())
    return "%s, %d cores, %.0f GiB, %s" % (cpu, os.cpu_count() or 0, memory, system)


def append_section(title, command, lines):
    """Append a dated section with the machine and the reproducing command; print it too."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(lines)
    section = "\n## %s (%s)\n\nMachine: %s. Command: `%s`.\n\n%s\n" % (title, stamp, machine(), command, body)
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text(HEADER)
    with BENCHMARKS_MD.open("a") as output:
        output.write(section)
    print(section)
