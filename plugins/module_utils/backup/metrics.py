# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The backup metrics node_exporter's textfile collector exposes, in ``<dir>/namtech_backup.prom``.

One file for every backup set on the node, one sample per set and metric (label ``backup``). A run rewrites
only its own set's samples, under a lock, and replaces the file atomically. A failed run sets the failure
time and keeps the last success's figures, so an alert on the success time's age keeps working.
"""

from __future__ import annotations

import fcntl
import os

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import BackupError, describe_os_error
from ansible_collections.namtech.internal_ai.plugins.module_utils.files import write_atomically
from ansible_collections.namtech.internal_ai.plugins.module_utils.prometheus_text import (
    MetricsParseError,
    parse_samples,
)

FILE_NAME = "namtech_backup.prom"
SUCCESS = "namtech_backup_last_success_timestamp_seconds"
FAILURE = "namtech_backup_last_failure_timestamp_seconds"
DURATION = "namtech_backup_duration_seconds"
SIZE = "namtech_backup_size_bytes"
METRICS = (
    (SUCCESS, "Unix time the backup last succeeded (0: never)."),
    (FAILURE, "Unix time the backup last failed (0: never)."),
    (DURATION, "Seconds the last successful backup took."),
    (SIZE, "Bytes the last successful backup stored (all its parts)."),
)


def read_samples(path):
    """``{(metric, backup): value}`` of our metrics in the file; an unreadable file counts as empty."""
    try:
        with open(path) as handle:
            samples = parse_samples(handle.read())
    except FileNotFoundError:
        return {}
    except (OSError, MetricsParseError, UnicodeDecodeError):
        return {}
    names = set(name for name, _help in METRICS)
    return dict(((sample["name"], sample["labels"].get("backup")), sample["value"]) for sample in samples
                if sample["name"] in names and sample["labels"].get("backup"))


def render(samples):
    lines = []
    for name, help_text in METRICS:
        lines.append("# HELP %s %s" % (name, help_text))
        lines.append("# TYPE %s gauge" % name)
        for (metric, backup), value in sorted(samples.items()):
            if metric == name:
                lines.append('%s{backup="%s"} %s' % (name, backup, format_value(value)))
    return "\n".join(lines) + "\n"


def format_value(value):
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def record_run(directory, backup, *, finished_at, success, duration=None, size=None):
    """Update ``backup``'s samples after a run that ended at ``finished_at`` (Unix time); the file's path."""
    path = os.path.join(directory, FILE_NAME)
    try:
        with open(path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            samples = read_samples(path)
            if success:
                samples[(SUCCESS, backup)] = finished_at
                samples[(DURATION, backup)] = round(duration or 0.0, 3)
                samples[(SIZE, backup)] = size or 0
            else:
                samples[(FAILURE, backup)] = finished_at
            samples.setdefault((SUCCESS, backup), 0)
            samples.setdefault((FAILURE, backup), 0)
            write_atomically(path, render(samples), mode=0o644)
    except OSError as exc:
        raise BackupError(describe_os_error("write the backup metrics to", path, exc) + "; check metrics_dir") from None
    return path
