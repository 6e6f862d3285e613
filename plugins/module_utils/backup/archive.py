# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A backup's archive: one tar stream, optionally gzip-compressed and encrypted, cut into parts of a fixed size.

Everything streams: files are read in chunks into the tar stream, whose bytes go to the current part while its
sha256 is computed; memory does not grow with the size of the backup. Reading chains the parts back into one
stream.
"""

from __future__ import annotations

import contextlib
import grp
import gzip
import hashlib
import os
import pwd
import stat
import tarfile

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import (
    CHUNK_SIZE,
    BackupError,
    HashingReader,
    describe_os_error,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.crypto import (
    DecryptingReader,
    EncryptingWriter,
)

COMPRESSIONS = ("none", "gzip")
GZIP_LEVEL = 6
PART_NAME = "part-%05d"


def part_name(index):
    return PART_NAME % index


class FilePart:
    """One part being written to a local file; its size and sha256 are computed as bytes arrive."""

    def __init__(self, path, name):
        self.path = path
        self.name = name
        self.digest = hashlib.sha256()
        self.size = 0
        try:
            self.handle = open(path, "xb")  # noqa: SIM115 - written across many calls, closed in finish()
        except OSError as exc:
            raise BackupError(describe_os_error("create the archive part", path, exc)) from None

    def write(self, data):
        try:
            self.handle.write(data)
        except OSError as exc:
            raise BackupError(describe_os_error("write the archive part", self.path, exc)) from None
        self.digest.update(data)
        self.size += len(data)

    def finish(self):
        """Flush to disk and close; the part's entry for the manifest."""
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
        except OSError as exc:
            raise BackupError(describe_os_error("write the archive part", self.path, exc)) from None
        return {"name": self.name, "size": self.size, "sha256": self.digest.hexdigest()}

    def discard(self):
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class PartSplitter:
    """A writable that cuts what it is given into parts of ``split_size`` bytes.

    ``open_part(index)`` returns an object with ``write(bytes)``, ``commit() -> entry`` and ``abort()``;
    the store behind it decides where the bytes go (a file in place, or a spool file uploaded on commit).
    """

    def __init__(self, open_part, split_size):
        if split_size < 1:
            raise BackupError("the part size must be at least one byte")
        self.open_part = open_part
        self.split_size = split_size
        self.parts = []
        self.current = None
        self.current_size = 0
        self.aborted = False

    def write(self, data):
        if self.aborted:
            return len(data)
        view = memoryview(data)
        while view:
            if self.current is None:
                self.current = self.open_part(len(self.parts) + 1)
                self.current_size = 0
            room = self.split_size - self.current_size
            piece = view[:room]
            self.current.write(bytes(piece))
            self.current_size += len(piece)
            view = view[len(piece):]
            if self.current_size >= self.split_size:
                self._commit_current()
        return len(data)

    def flush(self):
        pass

    def _commit_current(self):
        part, self.current = self.current, None
        self.parts.append(part.commit())

    def close(self):
        if self.current is not None:
            self._commit_current()
        return self.parts

    def abort(self):
        """Drop the part being written; what is written afterwards (buffers flushed on the way out) is ignored."""
        self.aborted = True
        if self.current is not None:
            self.current.abort()
            self.current = None


_owner_cache = {}


def owner_names(uid, gid):
    key = (uid, gid)
    if key not in _owner_cache:
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = ""
        try:
            group = grp.getgrgid(gid).gr_name
        except KeyError:
            group = ""
        _owner_cache[key] = (user, group)
    return _owner_cache[key]


def describe_stat(st, relative_path):
    """The manifest entry of a file system object, without its content checksum."""
    user, group = owner_names(st.st_uid, st.st_gid)
    entry = {
        "path": relative_path,
        "mode": "%04o" % stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "user": user,
        "group": group,
        "mtime": int(st.st_mtime),
    }
    if stat.S_ISREG(st.st_mode):
        entry.update(type="file", size=st.st_size)
    elif stat.S_ISDIR(st.st_mode):
        entry.update(type="dir")
    elif stat.S_ISLNK(st.st_mode):
        entry.update(type="symlink")
    else:
        entry.update(type="special")
    return entry


def tarinfo_from_entry(member, entry):
    info = tarfile.TarInfo(member)
    info.mode = int(entry["mode"], 8)
    info.uid, info.gid = entry["uid"], entry["gid"]
    info.uname, info.gname = entry["user"], entry["group"]
    info.mtime = entry["mtime"]
    if entry["type"] == "file":
        info.type, info.size = tarfile.REGTYPE, entry["size"]
    elif entry["type"] == "dir":
        info.type = tarfile.DIRTYPE
    else:
        info.type, info.linkname = tarfile.SYMTYPE, entry["target"]
    return info


class ArchiveWriter:
    """Sources add files to it; ``close()`` returns the parts, each with its size and sha256."""

    def __init__(self, open_part, split_size, compression="none", key=None):
        if compression not in COMPRESSIONS:
            raise BackupError("compression must be one of %s (got %r)" % (", ".join(COMPRESSIONS), compression))
        self.splitter = PartSplitter(open_part, split_size)
        self.encryptor = EncryptingWriter(self.splitter, key) if key else None
        sink = self.encryptor or self.splitter
        self.gzip = gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) \
            if compression == "gzip" else None
        self.tar = tarfile.open(fileobj=self.gzip or sink, mode="w|", format=tarfile.PAX_FORMAT,  # noqa: SIM115
                                copybufsize=CHUNK_SIZE)
        self.warnings = []
        self.bytes_in = 0

    def add_path(self, member, path, relative_path):
        """Add the file, directory or symlink at ``path``; its manifest entry (None for sockets and devices)."""
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise BackupError(describe_os_error("read", path, exc)) from None
        entry = describe_stat(st, relative_path)
        entry["member"] = member
        if entry["type"] == "special":
            self.warnings.append("skipped %s: not a regular file, directory or symlink" % path)
            return None
        if entry["type"] == "symlink":
            entry["target"] = os.readlink(path)
        if entry["type"] != "file":
            self.tar.addfile(tarinfo_from_entry(member, entry))
            return entry
        entry["sha256"] = self._add_file_content(member, path, entry, st)
        return entry

    def _add_file_content(self, member, path, entry, st):
        try:
            with open(path, "rb") as handle:
                reader = HashingReader(handle)
                self.tar.addfile(tarinfo_from_entry(member, entry), reader)
                after = os.fstat(handle.fileno())
        except BackupError:
            raise
        except OSError as exc:
            if str(exc) == "unexpected end of data":
                raise BackupError("%s shrank while it was being backed up, so the copy would not be consistent: stop "
                                  "the service that writes it during the backup (stop_services or pre_command)"
                                  % path) from None
            raise BackupError(describe_os_error("read", path, exc)) from None
        if after.st_size != st.st_size or after.st_mtime != st.st_mtime:
            self.warnings.append("%s changed while it was being backed up; stop the service that writes it during "
                                 "the backup (stop_services or pre_command) for a consistent copy" % path)
        self.bytes_in += entry["size"]
        return reader.hexdigest()

    def add_stream(self, member, source, entry):
        """Add ``entry["size"]`` bytes read from ``source`` (a file object); their sha256."""
        reader = HashingReader(source)
        try:
            self.tar.addfile(tarinfo_from_entry(member, entry), reader)
        except OSError as exc:
            if str(exc) == "unexpected end of data":
                raise BackupError("%s ended before its announced size of %d bytes" % (member, entry["size"])) from None
            raise
        self.bytes_in += entry["size"]
        return reader.hexdigest()

    def close(self):
        """Finish the tar stream (and compression and encryption); the parts' manifest entries."""
        self.tar.close()
        if self.gzip is not None:
            self.gzip.close()
        if self.encryptor is not None:
            self.encryptor.close()
        return self.splitter.close()

    def abort(self):
        self.splitter.abort()
        # Mark the tar stream closed: otherwise it flushes its buffer when garbage-collected.
        self.tar.fileobj.closed = True
        self.tar.closed = True
        if self.gzip is not None:
            self.gzip.close()


class ChainedReader:
    """Reads the parts' files one after the other as one stream."""

    def __init__(self, paths):
        self.paths = list(paths)
        self.handle = None

    def read(self, size=-1):
        pieces = []
        wanted = size
        while wanted != 0:
            if self.handle is None:
                if not self.paths:
                    break
                self.handle = open(self.paths.pop(0), "rb")  # noqa: SIM115 - closed at its end or in close()
            chunk = self.handle.read(CHUNK_SIZE if wanted < 0 else wanted)
            if not chunk:
                self.handle.close()
                self.handle = None
                continue
            pieces.append(chunk)
            if wanted > 0:
                wanted -= len(chunk)
        return b"".join(pieces)

    def close(self):
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class ArchiveReader:
    """Iterate over the members of a backup's archive from its (already verified) part files."""

    def __init__(self, part_paths, backup_id, compression="none", key=None):
        self.chain = ChainedReader(part_paths)
        stream = DecryptingReader(self.chain, key, backup_id) if key else self.chain
        self.gzip = gzip.GzipFile(fileobj=stream, mode="rb") if compression == "gzip" else None
        self.backup_id = backup_id
        try:
            self.tar = tarfile.open(fileobj=self.gzip or stream, mode="r|")  # noqa: SIM115 - closed in close()
        except (tarfile.TarError, OSError, EOFError) as exc:
            self.chain.close()
            raise BackupError("backup %s: the archive cannot be read (%s)" % (backup_id, exc)) from None

    def members(self):
        """Yield ``(member, file object or None)``; a file object is only valid until the next member."""
        try:
            for member in self.tar:
                yield member, (self.tar.extractfile(member) if member.isfile() else None)
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise BackupError("backup %s: the archive is damaged (%s)" % (self.backup_id, exc)) from None

    def close(self):
        self.tar.close()
        self.chain.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
