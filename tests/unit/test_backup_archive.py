"""The archive under a backup: encrypted frames, parts of a fixed size, a tar stream that streams both ways."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import pytest
import yaml

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup import crypto
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.archive import (
    ArchiveReader,
    ArchiveWriter,
    FilePart,
    PartSplitter,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import (
    BackupError,
    backup_time,
    new_backup_id,
    sha256_of_file,
    utc_now,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.manifest import (
    COLLECTION_VERSION,
    load_manifest,
)

SECRET = "correct horse battery staple"
BACKUP_ID = "20261127T021500Z-node1"


class MemoryPart:
    def __init__(self, sink, index):
        self.sink, self.index, self.data = sink, index, bytearray()

    def write(self, data):
        self.data += data

    def commit(self):
        self.sink.append(bytes(self.data))
        return {"name": "part-%05d" % self.index, "size": len(self.data)}

    def abort(self):
        self.data = None


def encrypt(plaintext, key, frame_size=crypto.FRAME_SIZE):
    sink = io.BytesIO()
    writer = crypto.EncryptingWriter(sink, key, frame_size=frame_size)
    writer.write(plaintext)
    writer.close()
    return sink.getvalue()


def decrypt(ciphertext, key, frame_size=crypto.FRAME_SIZE):
    return crypto.DecryptingReader(io.BytesIO(ciphertext), key, BACKUP_ID, frame_size=frame_size).read()


@pytest.fixture(scope="module")
def encryption():
    return crypto.new_encryption(SECRET)


def test_encrypted_frames_round_trip_and_hide_the_plaintext(encryption):
    params, key = encryption
    plaintext = os.urandom(10_000) + b"find me" * 100
    ciphertext = encrypt(plaintext, key, frame_size=4096)
    assert b"find me" not in ciphertext
    assert decrypt(ciphertext, key, frame_size=4096) == plaintext
    assert crypto.key_for_backup(SECRET, params, BACKUP_ID) == key
    assert params["algorithm"] == "AES-256-GCM" and params["kdf"] == "scrypt" and len(params["key_check"]) == 64


def test_every_backup_gets_its_own_key():
    (first, key_one), (second, key_two) = crypto.new_encryption(SECRET), crypto.new_encryption(SECRET)
    assert first["salt"] != second["salt"] and key_one != key_two


def test_a_wrong_key_is_refused_from_the_manifest_alone(encryption):
    params, _key = encryption
    with pytest.raises(BackupError) as error:
        crypto.key_for_backup("another secret of some length", params, BACKUP_ID)
    assert str(error.value) == ("wrong encryption key: backup 20261127T021500Z-node1 was encrypted with another key. "
                                "Nothing was restored; give the encryption_key that was in use when it was made")


def test_an_encrypted_backup_needs_a_key(encryption):
    with pytest.raises(BackupError, match=r"^backup 20261127T021500Z-node1 is encrypted: give the encryption_key"):
        crypto.key_for_backup(None, encryption[0], BACKUP_ID)


def test_a_short_secret_is_refused():
    with pytest.raises(BackupError, match=r"^encryption_key must be at least 16 characters"):
        crypto.new_encryption("short")


@pytest.mark.parametrize(("damage", "message"), [
    (lambda data: data[:-1], "encrypted frame 2 is cut off"),
    (lambda data: data[:len(crypto.MAGIC) + 2 * (5 + 4096 + 16)], "encrypted frame 2 is missing: the archive ends"),
    (lambda data: data[:20] + bytes([data[20] ^ 1]) + data[21:], "encrypted frame 0 failed authentication"),
    (lambda data: data + b"x", "encrypted frame 2 is followed by unexpected data"),
    (lambda data: b"NOTMAGIC" + data[8:], "does not start like an encrypted archive"),
])
def test_damaged_ciphertext_is_refused(encryption, damage, message):
    key = encryption[1]
    ciphertext = encrypt(os.urandom(2 * 4096 + 100), key, frame_size=4096)
    with pytest.raises(BackupError, match=message):
        decrypt(damage(ciphertext), key, frame_size=4096)


def test_swapped_frames_fail_authentication(encryption):
    key = encryption[1]
    ciphertext = encrypt(os.urandom(3 * 4096), key, frame_size=4096)
    frame = 5 + 4096 + 16
    head, first, second, rest = (ciphertext[:8], ciphertext[8:8 + frame], ciphertext[8 + frame:8 + 2 * frame],
                                 ciphertext[8 + 2 * frame:])
    with pytest.raises(BackupError, match="encrypted frame 0 failed authentication"):
        decrypt(head + second + first + rest, key, frame_size=4096)


def test_the_splitter_cuts_parts_of_the_exact_size():
    stored = []
    splitter = PartSplitter(lambda index: MemoryPart(stored, index), 1000)
    for _round in range(7):
        splitter.write(b"a" * 333)
    parts = splitter.close()
    assert [part["size"] for part in parts] == [1000, 1000, 331]
    assert b"".join(stored) == b"a" * 2331


def file_parts(directory):
    def open_part(index):
        part = FilePart(str(directory / ("part-%05d" % index)), "part-%05d" % index)
        part.commit, part.abort = part.finish, part.discard
        return part
    return open_part


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_archive_round_trip(tmp_path, encryption, compression, encrypted):
    key = encryption[1] if encrypted else None
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(300_000) + b"z" * 200_000)
    out = tmp_path / "parts"
    out.mkdir()
    writer = ArchiveWriter(file_parts(out), 100_000, compression, key)
    entry = writer.add_path("src/data/source.bin", str(source), "source.bin")
    parts = writer.close()
    assert entry["sha256"] == sha256_of_file(str(source))[0] and entry["size"] == 500_000
    assert all(part["size"] == 100_000 for part in parts[:-1]) and 0 < parts[-1]["size"] <= 100_000
    assert [sha256_of_file(str(out / part["name"])) for part in parts] == [(part["sha256"], part["size"])
                                                                           for part in parts]
    with ArchiveReader([str(out / part["name"]) for part in parts], BACKUP_ID, compression, key) as reader:
        members = [(member.name, fileobj.read()) for member, fileobj in reader.members()]
    assert members == [("src/data/source.bin", source.read_bytes())]


def test_memory_stays_flat_while_a_large_file_streams_through(tmp_path, encryption):
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        for _mebibyte in range(32):
            handle.write(os.urandom(1024 * 1024))
    out = tmp_path / "parts"
    out.mkdir()
    tracemalloc.start()
    try:
        writer = ArchiveWriter(file_parts(out), 16 * 1024 * 1024, "none", encryption[1])
        writer.add_path("src/data/big.bin", str(big), "big.bin")
        writer.close()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, "peak %d bytes while archiving 32 MiB" % peak


def test_backup_ids_sort_by_time_and_name_the_host():
    backup_id = new_backup_id(utc_now(), "node1.example.com")
    assert backup_id.endswith("-node1")
    assert backup_time("20261127T021500Z-node1").isoformat() == "2026-11-27T02:15:00+00:00"
    with pytest.raises(BackupError, match="is not a backup id"):
        backup_time("yesterday")


@pytest.mark.parametrize(("data", "message"), [
    (b"{", "is not valid JSON"),
    (b'{"format": "other"}', "is not a manifest of this collection's backups"),
    (b'{"format": "namtech.internal_ai.backup", "format_version": 9}', "reads format 1 and older: upgrade"),
    (b'{"format": "namtech.internal_ai.backup", "format_version": 1}', "has no valid 'id' field"),
])
def test_damaged_manifests_are_refused(data, message):
    with pytest.raises(BackupError, match=message):
        load_manifest(data, BACKUP_ID)


def test_manifests_record_the_collection_version_galaxy_yml_declares():
    galaxy = Path(__file__).resolve().parents[2] / "galaxy.yml"
    assert yaml.safe_load(galaxy.read_text())["version"] == COLLECTION_VERSION
