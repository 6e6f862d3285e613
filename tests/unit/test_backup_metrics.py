"""The textfile metrics node_exporter exposes for the backup alerts."""

from __future__ import annotations

import os

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.metrics import FILE_NAME, record_run
from ansible_collections.namtech.internal_ai.plugins.module_utils.prometheus_text import parse_samples
from ansible_collections.namtech.internal_ai.plugins.modules import ai_backup


def samples(directory):
    text = (directory / FILE_NAME).read_text()
    return dict(((sample["name"], sample["labels"]["backup"]), sample["value"]) for sample in parse_samples(text))


def test_a_success_sets_every_metric(tmp_path):
    record_run(str(tmp_path), "node1", finished_at=1_790_000_000, success=True, duration=12.5, size=4096)
    assert samples(tmp_path) == {
        ("namtech_backup_last_success_timestamp_seconds", "node1"): 1_790_000_000,
        ("namtech_backup_last_failure_timestamp_seconds", "node1"): 0,
        ("namtech_backup_duration_seconds", "node1"): 12.5,
        ("namtech_backup_size_bytes", "node1"): 4096,
    }
    text = (tmp_path / FILE_NAME).read_text()
    assert "# TYPE namtech_backup_size_bytes gauge\n" in text
    assert oct(os.stat(tmp_path / FILE_NAME).st_mode & 0o777) == "0o644"


def test_a_failure_keeps_the_last_success(tmp_path):
    record_run(str(tmp_path), "node1", finished_at=1_790_000_000, success=True, duration=3, size=10)
    record_run(str(tmp_path), "node1", finished_at=1_790_086_400, success=False)
    assert samples(tmp_path) == {
        ("namtech_backup_last_success_timestamp_seconds", "node1"): 1_790_000_000,
        ("namtech_backup_last_failure_timestamp_seconds", "node1"): 1_790_086_400,
        ("namtech_backup_duration_seconds", "node1"): 3,
        ("namtech_backup_size_bytes", "node1"): 10,
    }


def test_a_first_failure_reports_no_success_yet(tmp_path):
    record_run(str(tmp_path), "qdrant", finished_at=1_790_000_000, success=False)
    assert samples(tmp_path) == {("namtech_backup_last_success_timestamp_seconds", "qdrant"): 0,
                                 ("namtech_backup_last_failure_timestamp_seconds", "qdrant"): 1_790_000_000}


def test_each_backup_set_keeps_its_own_samples(tmp_path):
    record_run(str(tmp_path), "config", finished_at=1_790_000_000, success=True, duration=1, size=1)
    record_run(str(tmp_path), "qdrant", finished_at=1_790_000_100, success=True, duration=2, size=2)
    found = samples(tmp_path)
    assert found[("namtech_backup_last_success_timestamp_seconds", "config")] == 1_790_000_000
    assert found[("namtech_backup_last_success_timestamp_seconds", "qdrant")] == 1_790_000_100
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []


def test_a_damaged_file_is_replaced(tmp_path):
    (tmp_path / FILE_NAME).write_text("garbage{{{\n")
    record_run(str(tmp_path), "node1", finished_at=5, success=False)
    assert samples(tmp_path)[("namtech_backup_last_failure_timestamp_seconds", "node1")] == 5


def test_the_module_writes_success_and_failure(tmp_path, run_module):
    data = tmp_path / "data"
    data.mkdir()
    (data / "file").write_bytes(b"x" * 1000)
    args = {"name": "lab", "sources": [{"type": "directory", "path": str(data)}],
            "destination": {"path": str(tmp_path / "backups")}, "metrics_dir": str(tmp_path)}
    ok = run_module(ai_backup, args)
    assert ok["metrics_file"] == str(tmp_path / FILE_NAME)
    after_success = samples(tmp_path)
    assert after_success[("namtech_backup_size_bytes", "lab")] == ok["size"]
    assert after_success[("namtech_backup_last_failure_timestamp_seconds", "lab")] == 0
    failed = run_module(ai_backup, dict(args, sources=[{"type": "directory", "path": str(data),
                                                        "pre_command": ["false"]}]))
    assert failed["failed"] is True
    after_failure = samples(tmp_path)
    assert after_failure[("namtech_backup_last_failure_timestamp_seconds", "lab")] >= \
        after_success[("namtech_backup_last_success_timestamp_seconds", "lab")]
    assert after_failure[("namtech_backup_last_success_timestamp_seconds", "lab")] == \
        after_success[("namtech_backup_last_success_timestamp_seconds", "lab")]


def test_an_unwritable_metrics_dir_is_reported(tmp_path, run_module):
    data = tmp_path / "data"
    data.mkdir()
    result = run_module(ai_backup, {"sources": [{"type": "directory", "path": str(data)}],
                                    "destination": {"path": str(tmp_path / "backups")},
                                    "metrics_dir": str(tmp_path / "missing")})
    assert result["failed"] is True
    assert result["msg"].startswith("backup ")
    assert result["msg"].split(" ", 2)[2].startswith(
        "was stored, but cannot write the backup metrics to %s/missing/%s: it does not exist" % (tmp_path, FILE_NAME))
