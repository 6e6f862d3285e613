"""files.write_atomically: the new content or the old, never a part of it, and no temporary file left behind."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from ansible_collections.namtech.internal_ai.plugins.module_utils.files import write_atomically


def mode_of(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_text_is_written_as_utf8_with_the_mode_asked_for(tmp_path):
    path = tmp_path / "report.md"
    write_atomically(str(path), "Kosten: 12 €\n", mode=0o644)
    assert path.read_bytes() == "Kosten: 12 €\n".encode()
    assert mode_of(path) == 0o644
    assert os.listdir(tmp_path) == ["report.md"]


def test_bytes_replace_an_existing_file_and_without_a_mode_stay_private(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("old")
    path.chmod(0o644)
    write_atomically(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert mode_of(path) == 0o600


def test_the_move_gets_a_temporary_file_beside_the_target(tmp_path):
    moves = []

    def move(source, destination):
        moves.append((os.path.dirname(source), os.path.basename(source), destination))
        os.replace(source, destination)

    path = tmp_path / "latest"
    write_atomically(str(path), "20261127T021500Z-node1\n", move=move)
    [(directory, name, destination)] = moves
    assert (directory, destination) == (str(tmp_path), str(path))
    assert name.startswith(".latest.") and name.endswith(".tmp")
    assert path.read_text() == "20261127T021500Z-node1\n"


@pytest.mark.parametrize("stage", ["write", "move"])
def test_a_failure_keeps_the_old_content_and_removes_the_temporary_file(tmp_path, monkeypatch, stage):
    def disk_full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    path = tmp_path / "namtech_backup.prom"
    path.write_text("old\n")
    if stage == "write":
        monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match=r"^\[Errno 28\] No space left on device$"):
        write_atomically(str(path), "new\n", move=disk_full if stage == "move" else os.replace)
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["namtech_backup.prom"]


def test_a_missing_directory_fails_with_the_reason(tmp_path):
    path = tmp_path / "missing" / "report.json"
    with pytest.raises(FileNotFoundError):
        write_atomically(str(path), "{}")
    assert not (tmp_path / "missing").exists()
